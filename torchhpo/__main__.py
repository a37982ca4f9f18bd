"""``python -m torchhpo``: the ``torchhpo`` command line."""

from torchhpo.cli import main

raise SystemExit(main())
