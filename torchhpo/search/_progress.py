"""The search's progress bar: one ``tqdm.auto`` bar per search ``fit``.

The bar advances by **model-epochs**: every epoch a pack trains moves it by the
number of models in the pack, so it moves while packs train, not only when their
models finish (packs finish together at the end; on a GPU one large pack would
hold it at 0 % until then). Its total is an upper bound, the sum of the models'
epoch budgets (``max_iter``, or the ``partial_fit`` epochs of Optuna's pruning); a
model that stops early (convergence, early stopping, pruning) gives the bar its
unrun epochs when it finishes, so the bar ends at 100 %. Models trained per fit,
found in a checkpoint journal, or failed before training advance it by their whole
share at once.

A search that evaluates candidates more than once (successive halving's
iterations, OptunaSearchCV's batches of trials) draws **one** bar: each
evaluation is a :class:`Stage` of it, and the bar's total is the stages seen so
far plus an estimate of those to come (:func:`halving_left`, or the trials Optuna
has not asked yet). The bar never moves backwards: what the engine takes back (the
epochs of models retried after an out-of-memory split) is made up again before the
bar moves on. When the search ends, the total is set to what was counted, so a
search stopped early (``timeout``, ``study.stop()``) ends at 100 % too.

Where stderr is not a terminal (a log file, CI) and not a notebook, the bar
redraws at most every :data:`LOG_INTERVAL` seconds, so a long search writes a few
lines of progress instead of a frame every tenth of a second.

The postfix shows the finished (candidate, fold) fits and the lowest final
training loss among the finished models while they train; once the fits are
scored (after training), the best mean test score over the candidates.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from math import ceil, floor, log

from tqdm.auto import tqdm

from ..engine import ModelResult

#: Seconds between redraws when stderr is a log file rather than a terminal.
LOG_INTERVAL = 60.0


def _writes_to_log() -> bool:
    """Whether the bar would draw into a non-terminal (a file, a pipe) stream."""
    if "notebook" in getattr(tqdm, "__module__", ""):
        return False  # a Jupyter widget, not text frames
    stream = sys.stderr
    try:
        return stream is None or not stream.isatty()
    except (AttributeError, ValueError):
        return True


def _make_bar(total: int, enabled: bool, desc: str) -> tqdm:
    options = {}
    if enabled and _writes_to_log():
        options = {"mininterval": LOG_INTERVAL, "maxinterval": LOG_INTERVAL}
    return tqdm(
        total=total, disable=not enabled, desc=desc, unit="epoch", leave=True, **options
    )


class SearchProgress:
    """The bar of one search ``fit``, opened at its first :meth:`stage`.

    Use it as a context manager around the whole search: leaving it closes the
    bar, at 100 %.

    Parameters
    ----------
    enabled : bool
        False gives a silent bar (the search's ``progress=False``).
    desc : str
        Label shown before the bar.
    """

    def __init__(self, enabled: bool, desc: str) -> None:
        self.enabled = enabled
        self.desc = desc
        self.bar: tqdm | None = None
        self.n_fits = 0
        self.finished = 0
        self.best_loss = math.inf
        self.best_score = math.nan
        self._counted = 0  # model-epochs of the stages already closed

    @contextmanager
    def stage(
        self,
        total: int,
        n_fits: int,
        left: tuple[int, int] = (0, 0),
        unrun_per_model: int = 0,
    ) -> Iterator[Stage]:
        """Yield the :class:`Stage` of one evaluation.

        Parameters
        ----------
        total : int
            The evaluation's model-epochs (sum of its models' budgets).
        n_fits : int
            Its (candidate, fold) fits.
        left : (int, int)
            Fits and model-epochs expected from later evaluations of this search.
        unrun_per_model : int
            Epochs the engine leaves out of a finished model's count (its
            ``partial_fit`` epochs but one, which the engine counts as one).
        """
        fits_left, epochs_left = left
        self.n_fits = self.finished + n_fits + fits_left
        expected = self._counted + total + epochs_left
        if self.bar is None:
            self.bar = _make_bar(expected, self.enabled, self.desc)
        else:
            self.bar.total = max(expected, self._counted + total)
        stage = Stage(self, total, unrun_per_model)
        try:
            yield stage
        except BaseException:
            self._counted += stage.shown  # an error or Ctrl-C: as far as it got
            raise
        stage.fill()
        self._counted += total

    def close(self, complete: bool = True) -> None:
        """End the bar: at 100 % when the search ``complete``-d, with the final
        postfix; else where it stopped (an error, Ctrl-C)."""
        if self.bar is None:
            return
        if not self.bar.disable:
            self._postfix()
        if complete:
            self.bar.total = self._counted
        self.bar.close()

    def __enter__(self) -> SearchProgress:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        self.close(complete=exc_type is None)

    def _postfix(self) -> None:
        text = f"fits={self.finished}/{self.n_fits}"
        if math.isfinite(self.best_loss):
            text += f", best_loss={self.best_loss:.4g}"
        if math.isfinite(self.best_score):
            text += f", best_score={self.best_score:.4g}"
        self.bar.set_postfix_str(text, refresh=False)


class Stage:
    """One evaluation's share of the search's bar.

    The engine's counts go to ``net``; the bar shows ``net`` clipped to what it
    showed before and to the stage's total, so it only moves forward.
    """

    def __init__(self, owner: SearchProgress, total: int, unrun_per_model: int):
        self.owner = owner
        self.total = total
        self.unrun_per_model = unrun_per_model
        self.net = 0
        self.shown = 0

    def _move(self) -> None:
        target = min(max(self.net, self.shown), self.total)
        if target > self.shown:
            self.owner.bar.update(target - self.shown)
            self.shown = target

    def grow(self, n_fits: int, epochs: int) -> None:
        """Add fits and model-epochs learnt of while the stage runs (a stream)."""
        self.total += epochs
        self.owner.n_fits += n_fits
        self.owner.bar.total += epochs

    def fill(self) -> None:
        """Count the rest of the stage's total (the evaluation ended)."""
        self.net = self.total
        self._move()

    def epochs(self, count: int) -> None:
        """Advance by ``count`` model-epochs (negative: take back retried ones)."""
        self.net += count
        self._move()

    def fits_done(self, count: int, epochs: int = 0) -> None:
        """Count ``count`` finished fits, advancing the bar by ``epochs``."""
        self.owner.finished += count
        self.net += epochs
        self._move()
        self.owner._postfix()

    def models_finished(self, count: int) -> None:
        """The engine's count of finished models (with their unrun epochs)."""
        self.fits_done(count, count * self.unrun_per_model)

    def result(self, result: ModelResult) -> None:
        """Note a trained model's final loss (the postfix's best loss)."""
        if result.failure is None and math.isfinite(result.loss):
            self.owner.best_loss = min(self.owner.best_loss, result.loss)

    def scores(self, results: list, n_splits: int, metric: str | None) -> None:
        """Show the best mean test score over candidates, from ``_fit_and_score``
        results in (candidate, fold) order (``metric``: the multimetric one)."""
        best = self.owner.best_score
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
        self.owner.best_score = best
        self.owner._postfix()


def halving_left(search, n_fits: int, total: int) -> tuple[int, int]:
    """Return the fits and model-epochs of a halving search's iterations to come.

    Read from scikit-learn's schedule (``factor``, ``min_resources_``,
    ``max_resources_``, ``aggressive_elimination``) while ``_run_search`` runs an
    iteration; ``(0, 0)`` for any other search. With ``resource`` ``max_iter``, an
    iteration's models are budgeted its ``max_iter``; otherwise as this one's.
    """
    candidates = getattr(search, "n_candidates_", None)
    resources = getattr(search, "n_resources_", None)
    if not candidates or not resources or not hasattr(search, "factor"):
        return 0, 0
    factor = search.factor
    first = candidates[0]
    required = 1 + floor(log(first, factor)) if first > 0 else 1
    possible = 1 + floor(log(search.max_resources_ // search.min_resources_, factor))
    n_iterations = (
        required if search.aggressive_elimination else min(possible, required)
    )
    itr = len(candidates) - 1
    n_splits = max(n_fits // max(candidates[-1], 1), 1)
    per_fit = total / max(n_fits, 1)
    by_max_iter = search.resource.split("__")[-1] == "max_iter"
    fits = epochs = 0
    n_candidates = candidates[-1]
    for later in range(itr + 1, n_iterations):
        n_candidates = ceil(n_candidates / factor)
        power = later
        if search.aggressive_elimination:
            power = max(0, later - required + possible)
        resource = min(
            int(factor**power * search.min_resources_), search.max_resources_
        )
        fits += n_candidates * n_splits
        budget = resource if by_max_iter else per_fit
        epochs += round(n_candidates * n_splits * budget)
    return fits, epochs


@contextmanager
def progress_bar(
    total: int, enabled: bool, desc: str, n_fits: int | None = None
) -> Iterator[Stage]:
    """Yield the only :class:`Stage` of a bar of ``total`` model-epochs.

    Parameters
    ----------
    total : int
        Sum of the models' epoch budgets (``max_iter``).
    enabled : bool
        False gives a silent bar.
    desc : str
        Label shown before the bar.
    n_fits : int, optional
        Number of (candidate, fold) fits, for the postfix (default ``total``).
    """
    with SearchProgress(enabled, desc) as search:
        with search.stage(total, total if n_fits is None else n_fits) as stage:
            yield stage
