"""Optuna's pruning as an engine epoch policy: report per epoch, stop pruned trials.

optuna_integration's pruning calls ``partial_fit`` once per fold, reports the mean
test-fold score to the trial and asks the pruner, every epoch. Here the engine
trains every fold of every trial of a batch at once, scores each model on its test
fold after every epoch, and :class:`TrialPruning` turns those scores into the same
reports and stops the models of pruned trials.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections import defaultdict

import numpy as np

from ..engine.policy import EpochPolicy


class TrialPruning(EpochPolicy):
    """Report each trial's mean fold score per epoch to Optuna; stop pruned trials.

    One policy serves one engine call. A trial's epoch is reported (``step`` =
    epoch - 1, as optuna_integration counts) once every fold of the trial still
    training has finished that epoch, so folds split over packs are waited for; a
    fold that failed counts as ``error_score`` afterwards. When the pruner prunes
    the trial, its models still training stop at their next epoch end (at once
    for those that just reported).

    Parameters
    ----------
    trials : list of optuna.trial.Trial
        The batch's trials, by candidate index.
    keys : list of (candidate, fold)
        Per task of the engine call.
    error_score : numeric or 'raise'
        The search's ``error_score``.
    """

    needs_scores = True

    def __init__(self, trials: list, keys: list, error_score) -> None:
        self.trials = trials
        self.candidate = np.array([c for c, _ in keys], dtype=np.int64)
        self.training: dict[int, set] = defaultdict(set)
        for task, c in enumerate(self.candidate):
            self.training[int(c)].add(task)
        self.failed_at: dict[int, list[int]] = defaultdict(list)
        self.scores: dict[int, dict[int, dict[int, float]]] = defaultdict(dict)
        self.reported: dict[int, int] = defaultdict(int)
        self.pruned: set[int] = set()
        self.error_score = (
            float(error_score) if isinstance(error_score, numbers.Number) else None
        )

    def extend(self, trial, n_models: int) -> None:
        """Add a trial whose ``n_models`` fold models come next (a stream)."""
        c = len(self.trials)
        self.trials.append(trial)
        first = len(self.candidate)
        self.candidate = np.append(self.candidate, np.full(n_models, c, np.int64))
        self.training[c] = set(range(first, first + n_models))

    def end_epoch(self, models, epochs, scores):
        """Record the epoch's scores, report complete epochs, stop pruned trials."""
        touched = set()
        for task, epoch, score in zip(models, epochs, scores, strict=True):
            c = int(self.candidate[task])
            touched.add(c)
            if c not in self.pruned:
                self.scores[c].setdefault(int(epoch), {})[int(task)] = float(score)
        for c in sorted(touched):
            self._report(c)
        return np.isin(self.candidate[models], list(self.pruned))

    def finished(self, task: int, result) -> None:
        """Forget a model that left its pack; report what it was waited for."""
        c = int(self.candidate[task])
        self.training[c].discard(task)
        if result.failure is not None:
            self.failed_at[c].append(int(result.n_iter))
        self._report(c)

    def _report(self, c: int) -> None:
        if c in self.pruned:
            return
        trial = self.trials[c]
        while True:
            epoch = self.reported[c] + 1
            got = self.scores[c].get(epoch)
            if got is None or not self.training[c] <= set(got):
                return
            values = list(got.values())
            if self.error_score is not None:
                values += [self.error_score for e in self.failed_at[c] if e < epoch]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = float(np.nanmean(values)) if values else math.nan
            del self.scores[c][epoch]
            self.reported[c] = epoch
            trial.report(mean, step=epoch - 1)
            if trial.should_prune():
                self.pruned.add(c)
                self.scores.pop(c, None)
                return
