"""The example configs shipped inside the package, with the data files they use.

They install with torchhpo (wheel or clone alike), so ``torchhpo run seed_grid``
works from any folder, and ``torchhpo examples DIR`` copies them out to edit:

* ``seed_grid``, ``seed_random``, ``seed_halving``, ``seed_optuna``: the seed's
  searches on scikit-learn's digits;
* ``penguins_like``: a mixed-type CSV with missing cells (``data/penguins_like.csv``,
  a copy of ``tests/data/penguins_like.csv`` written by
  ``scripts/make_penguins_like.py``);
* ``synthetic_large``: a larger random search, for a GPU.

``data/new_digits.csv`` (the last ten images of scikit-learn's digits, one
``pixel_R_C`` column per pixel) and ``data/new_birds.csv`` (six birds drawn by
``scripts/make_penguins_like.py``'s ``rows(2, seed=1)``, without the species, the
columns in another order than in training) are the README's ``torchhpo predict``
examples.
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

#: The folder holding the bundled configs (``*.yaml``) and ``data/``.
FOLDER = Path(__file__).resolve().parent
SUFFIX = ".yaml"


def names() -> list[str]:
    """Return the names of the bundled configs (``seed_grid``, ...), sorted."""
    return sorted(path.stem for path in FOLDER.glob(f"*{SUFFIX}"))


def find(name: str) -> Path | None:
    """Return the bundled config a name refers to, or None.

    ``seed_grid``, ``seed_grid.yaml`` and ``configs/seed_grid.yaml`` (the path the
    README used from a clone) all name the bundled ``seed_grid.yaml``.

    Parameters
    ----------
    name : str
        A config name or a path whose folder is absent or ``configs``.
    """
    path = Path(name)
    if path.parent not in (Path(), Path("configs")):
        return None
    if path.suffix not in ("", SUFFIX, ".yml"):
        return None
    candidate = FOLDER / f"{path.stem}{SUFFIX}"
    return candidate if candidate.is_file() else None


def suggest(name: str) -> str:
    """Return a hint listing the bundled configs (with the closest one)."""
    close = difflib.get_close_matches(Path(name).stem, names(), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}bundled configs: {', '.join(names())}"


def copy_to(destination: str | Path, *, force: bool = False) -> list[Path]:
    """Copy the bundled configs and ``data/`` into ``destination``.

    Parameters
    ----------
    destination : str or Path
        A folder (created if missing).
    force : bool
        Overwrite files that exist there.

    Returns
    -------
    list of Path
        The files written.

    Raises
    ------
    FileExistsError
        If a file to write exists and ``force`` is False (nothing is written).
    """
    destination = Path(destination)
    sources = sorted(FOLDER.glob(f"*{SUFFIX}")) + sorted((FOLDER / "data").glob("*"))
    targets = [destination / source.relative_to(FOLDER) for source in sources]
    existing = [target for target in targets if target.exists()]
    if existing and not force:
        raise FileExistsError(
            f"{existing[0]} exists ({len(existing)} of the example files do); pass "
            "--force to overwrite them, or choose another folder."
        )
    for source, target in zip(sources, targets, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return targets
