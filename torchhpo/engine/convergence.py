"""scikit-learn's per-epoch stopping rule, vectorised over the models of a pack.

Runs on the host once per epoch, on NumPy arrays of length M, after the epoch's
losses (and validation scores) came back from the device in one transfer. It mirrors
``_fit_stochastic`` / ``_update_no_improvement_count`` / the optimizers'
``iteration_ends`` and ``trigger_stopping``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SCHEDULES = {"constant": 0, "invscaling": 1, "adaptive": 2}


@dataclass
class EpochOutcome:
    """Which models stop after this epoch, and why (boolean arrays of length M)."""

    converged: np.ndarray
    hit_max_iter: np.ndarray
    improved: np.ndarray  # validation score improved: save best weights

    @property
    def stopped(self) -> np.ndarray:
        """Models that finish training now."""
        return self.converged | self.hit_max_iter


class ConvergenceTracker:
    """Per-model counters of scikit-learn's convergence rule.

    Parameters
    ----------
    hypers : list of Hyperparams
        One per model, in pack order.
    states : list of ModelState
        Starting counters per model (fresh or resumed).
    incremental : ndarray of bool
        Models doing ``partial_fit`` epochs.
    epochs_done : ndarray of int, optional
        Epochs each model already trained in this fit (a model continued from a
        rung): they count towards ``max_iter``.
    incremental_epochs : ndarray of int, optional
        ``partial_fit`` epochs each incremental model runs in this call (default
        1): it stops after them, whatever its convergence counters say.
    """

    def __init__(
        self, hypers, states, incremental, epochs_done=None, incremental_epochs=None
    ) -> None:
        self.is_sgd = np.array([h.solver == "sgd" for h in hypers])
        self.schedule = np.array([_SCHEDULES[h.learning_rate] for h in hypers])
        self.learning_rate_init = np.array([h.learning_rate_init for h in hypers])
        self.power_t = np.array([h.power_t for h in hypers], dtype=float)
        self.tol = np.array([h.tol for h in hypers], dtype=float)
        self.n_iter_no_change = np.array([h.n_iter_no_change for h in hypers], float)
        self.max_iter = np.array([h.max_iter for h in hypers])
        self.early_stopping = np.array([h.early_stopping for h in hypers])
        self.incremental = np.asarray(incremental, dtype=bool)
        self.n_iter = np.zeros(len(hypers), dtype=np.int64)
        if epochs_done is not None:
            self.n_iter += np.asarray(epochs_done, dtype=np.int64)
        self.incremental_stop = self.n_iter + (
            1
            if incremental_epochs is None
            else np.asarray(incremental_epochs, dtype=np.int64)
        )
        self.t = np.array([s.t for s in states], dtype=np.int64)
        self.no_improvement = np.array([s.no_improvement_count for s in states])
        self.best_loss = np.array(
            [np.inf if s.best_loss is None else s.best_loss for s in states], float
        )
        self.best_val = np.array(
            [
                -np.inf if s.best_validation_score is None else s.best_validation_score
                for s in states
            ],
            dtype=float,
        )
        self.learning_rate = np.array(
            [
                s.optimizer.learning_rate
                if s.optimizer is not None and s.optimizer.solver == "sgd"
                else h.learning_rate_init
                for h, s in zip(hypers, states, strict=True)
            ],
            dtype=float,
        )

    def select(self, keep: np.ndarray) -> None:
        """Keep only the models at positions ``keep`` (after pack compaction)."""
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray):
                setattr(self, name, value[keep])

    def write_(self, slots: np.ndarray, other: ConvergenceTracker) -> None:
        """Put ``other``'s models (in order) at positions ``slots``, in place."""
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray):
                value[slots] = getattr(other, name)

    def extend(self, other: ConvergenceTracker) -> None:
        """Append the models of ``other`` (models admitted into a pack)."""
        for name, value in vars(self).items():
            if isinstance(value, np.ndarray):
                setattr(self, name, np.concatenate([value, getattr(other, name)]))

    def end_epoch(
        self, losses: np.ndarray, val_scores: np.ndarray | None, n_train: np.ndarray
    ) -> EpochOutcome:
        """Apply one epoch's bookkeeping; return which models stop.

        Parameters
        ----------
        losses : ndarray of shape (M,)
            Epoch training losses.
        val_scores : ndarray of shape (M,) or None
            Validation scores (read only where ``early_stopping``).
        n_train : ndarray of shape (M,)
            Training-set sizes (added to ``t_``).
        """
        self.n_iter += 1
        self.t += n_train
        es = self.early_stopping
        improved = np.zeros_like(es)
        if es.any():
            val = np.where(es, val_scores if val_scores is not None else np.nan, 0.0)
            with np.errstate(invalid="ignore"):
                worse = val < self.best_val + self.tol
                improved = es & (val > self.best_val)
            self.best_val = np.where(improved, val, self.best_val)
        with np.errstate(invalid="ignore"):
            loss_worse = losses > self.best_loss - self.tol
            self.best_loss = np.where(
                ~es & (losses < self.best_loss), losses, self.best_loss
            )
        worse = np.where(es, worse, loss_worse) if es.any() else loss_worse
        self.no_improvement = np.where(worse, self.no_improvement + 1, 0)

        invscaling = self.is_sgd & (self.schedule == 1)
        self.learning_rate = np.where(
            invscaling,
            self.learning_rate_init / (self.t + 1.0) ** self.power_t,
            self.learning_rate,
        )

        triggered = self.no_improvement > self.n_iter_no_change
        adaptive = self.is_sgd & (self.schedule == 2)
        lowers_rate = triggered & adaptive & (self.learning_rate > 1e-6)
        converged = triggered & ~lowers_rate
        self.learning_rate = np.where(
            lowers_rate, self.learning_rate / 5.0, self.learning_rate
        )
        self.no_improvement = np.where(lowers_rate, 0, self.no_improvement)

        hit_max = ~converged & ~self.incremental & (self.n_iter >= self.max_iter)
        # partial_fit epochs: scikit-learn's "stop" only ends one partial_fit call.
        done = self.incremental & (self.n_iter >= self.incremental_stop)
        converged = (converged & ~self.incremental) | done
        return EpochOutcome(
            converged=converged, hit_max_iter=hit_max, improved=improved
        )
