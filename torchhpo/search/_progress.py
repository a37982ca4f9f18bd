"""The search's progress bar: a ``tqdm.auto`` bar (terminal or notebook) over fits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm


@contextmanager
def progress_bar(total: int, enabled: bool, desc: str) -> Iterator[tqdm]:
    """Yield a bar of ``total`` fits; call ``bar.update(n)`` as fits finish.

    Parameters
    ----------
    total : int
        Number of (candidate, fold) fits.
    enabled : bool
        False gives a silent bar (the search's ``progress=False``).
    desc : str
        Label shown before the bar.
    """
    bar = tqdm(total=total, disable=not enabled, desc=desc, unit="fit", leave=True)
    try:
        yield bar
    finally:
        bar.close()
