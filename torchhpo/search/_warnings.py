"""A search's ConvergenceWarnings: one per message per search, at the user's line.

Training thousands of (candidate, fold) models would warn thousands of times;
scikit-learn's search warns once per fit. Here each evaluation's warnings are
counted by message (:meth:`ConvergenceNotes.collect`) and the search warns once
per message when it ends (:meth:`ConvergenceNotes.emit`), with the count of fits.
A halving search on ``max_iter`` stops every iteration but the last at that
iteration's ``max_iter`` by design, so only its last iteration's warnings count.

The warnings point at the user's call (the first frame outside torchhpo and
scikit-learn), not at torchhpo's own modules.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from collections.abc import Callable

import sklearn
from sklearn.exceptions import ConvergenceWarning

#: torchhpo's package folder: two up from this file (no import of the package
#: itself, which imports this module).
_TORCHHPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Frames in these folders are the library's, not the caller's.
_LIBRARY_DIRS = (
    _TORCHHPO_DIR + os.sep,
    os.path.dirname(sklearn.__file__) + os.sep,
)
_PLUMBING = ("contextlib.py", "functools.py")


def caller_stacklevel() -> int:
    """Return the ``stacklevel`` of the first frame outside torchhpo and sklearn,
    as seen from the function calling this one."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith(_LIBRARY_DIRS) and not name.endswith(_PLUMBING):
            return level
        frame = frame.f_back
        level += 1
    return 1


class ConvergenceNotes:
    """The ConvergenceWarnings of one search ``fit``, counted by message.

    Parameters
    ----------
    last_only : bool, default=False
        Keep only the latest evaluation's warnings (halving on ``max_iter``).
    """

    def __init__(self, last_only: bool = False) -> None:
        self.last_only = last_only
        self.counts: Counter = Counter()
        self.n_models = 0

    def collect(self, apply: Callable[[], None], n_models: int) -> None:
        """Run ``apply``, counting its ConvergenceWarnings; pass others through."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            apply()
        if self.last_only:
            self.counts, self.n_models = Counter(), 0
        self.n_models += n_models
        for w in caught:
            if issubclass(w.category, ConvergenceWarning):
                self.counts[str(w.message)] += 1
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)

    def emit(self) -> None:
        """Warn once per message, with its count, at the user's line."""
        for message, count in self.counts.items():
            warnings.warn(
                f"{message} ({count} of {self.n_models} fits of this search)",
                ConvergenceWarning,
                stacklevel=caller_stacklevel(),
            )
        self.counts.clear()
