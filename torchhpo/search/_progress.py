"""The search's progress bar: a ``tqdm.auto`` bar (terminal or notebook).

The bar advances by **model-epochs**: every epoch a pack trains moves it by the
number of models in the pack, so it moves while packs train, not only when their
models finish (packs finish together at the end; on a GPU one large pack would
hold it at 0 % until then). Its total is an upper bound, the sum of the models'
``max_iter``; a model that stops early (convergence, early stopping) gives the bar
its unrun epochs when it finishes, so the bar ends at 100 %. Models trained per
fit, found in a checkpoint journal, or failed before training advance it by their
whole share at once.

The postfix shows the finished (candidate, fold) fits and the lowest final
training loss among the finished models while they train; once the fits are
scored (after training), the best mean test score over the candidates.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

from ..engine import ModelResult


class SearchProgress:
    """What a search reports to its bar.

    Parameters
    ----------
    bar : tqdm
        The bar, of total model-epochs.
    n_fits : int
        The search's (candidate, fold) fits.
    """

    def __init__(self, bar: tqdm, n_fits: int) -> None:
        self.bar = bar
        self.n_fits = n_fits
        self.finished = 0
        self.best_loss = math.inf
        self.best_score = math.nan

    def epochs(self, count: int) -> None:
        """Advance by ``count`` model-epochs (negative: take back retried ones)."""
        self.bar.update(count)

    def fits_done(self, count: int, epochs: int = 0) -> None:
        """Count ``count`` finished fits, advancing the bar by ``epochs``."""
        self.finished += count
        if epochs:
            self.bar.update(epochs)
        self._postfix()

    def result(self, result: ModelResult) -> None:
        """Note a trained model's final loss (the postfix's best loss)."""
        if result.failure is None and math.isfinite(result.loss):
            self.best_loss = min(self.best_loss, result.loss)

    def scores(self, results: list, n_splits: int, metric: str | None) -> None:
        """Show the best mean test score over candidates, from ``_fit_and_score``
        results in (candidate, fold) order (``metric``: the multimetric one)."""
        best = math.nan
        for start in range(0, len(results), n_splits):
            folds = []
            for out in results[start : start + n_splits]:
                score = out["test_scores"] if out else math.nan
                if isinstance(score, dict):
                    score = score.get(metric, math.nan)
                folds.append(float(score))
            mean = sum(folds) / len(folds)
            if math.isfinite(mean) and not mean <= best:
                best = mean
        self.best_score = best
        self._postfix()

    def _postfix(self) -> None:
        text = f"fits={self.finished}/{self.n_fits}"
        if math.isfinite(self.best_loss):
            text += f", best_loss={self.best_loss:.4g}"
        if math.isfinite(self.best_score):
            text += f", best_score={self.best_score:.4g}"
        self.bar.set_postfix_str(text, refresh=False)


@contextmanager
def progress_bar(
    total: int, enabled: bool, desc: str, n_fits: int | None = None
) -> Iterator[SearchProgress]:
    """Yield a :class:`SearchProgress` over a bar of ``total`` model-epochs.

    Parameters
    ----------
    total : int
        Sum of the models' epoch budgets (``max_iter``).
    enabled : bool
        False gives a silent bar (the search's ``progress=False``).
    desc : str
        Label shown before the bar.
    n_fits : int, optional
        Number of (candidate, fold) fits, for the postfix (default ``total``).
    """
    bar = tqdm(total=total, disable=not enabled, desc=desc, unit="epoch", leave=True)
    progress = SearchProgress(bar, total if n_fits is None else n_fits)
    try:
        yield progress
    finally:
        if not bar.disable:
            progress._postfix()
        bar.close()
