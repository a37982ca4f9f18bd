"""Who decides, after each epoch, which models keep training: the rung mechanism.

A pack trains its models in lock-step and can let any of them leave after any epoch
without disturbing the others. Two things decide when a model leaves:

* scikit-learn's own rule (``tol`` / ``n_iter_no_change``, ``max_iter``), applied by
  :class:`~torchhpo.engine.convergence.ConvergenceTracker` to every model;
* an :class:`EpochPolicy` given to :func:`~torchhpo.engine.train_models`, which sees
  each epoch's scores and may stop models early (Optuna's pruners).

Rungs (successive halving on ``max_iter``) need no policy: a search trains each
model with ``max_iter`` set to the rung and ``ModelTask.resumable``; models that reach
the rung come back with a :attr:`~torchhpo.engine.ModelResult.resume` state, and the
survivors continue from it (``ModelTask.epochs_done``) up to the next rung, exactly as
if they had never stopped. Models that converged before the rung are final.

A policy runs in the process that called ``train_models``: forked CPU workers ask it
through their pipe (see :mod:`~torchhpo.engine.backends.forked`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class EpochPolicy(ABC):
    """Decide after each epoch which models of a pack stop now.

    Subclasses implement :meth:`end_epoch`. Calls come from every pack of a
    ``train_models`` call (and from several threads); the engine serialises them.
    """

    #: Whether :meth:`end_epoch` needs each model's score on its
    #: ``ModelTask.score_index`` rows (computed on the device every epoch).
    needs_scores: bool = True

    @abstractmethod
    def end_epoch(
        self, models: np.ndarray, epochs: np.ndarray, scores: np.ndarray | None
    ) -> np.ndarray:
        """Return a boolean mask of the models to stop now.

        Parameters
        ----------
        models : ndarray of int
            Task indices (in the ``train_models`` call) of the models still
            training in this pack.
        epochs : ndarray of int
            Epochs each of them has trained in its fit (``n_iter`` so far).
        scores : ndarray of float or None
            Each model's score on its ``score_index`` rows after this epoch
            (accuracy for classifiers, R² for regressors), when
            :attr:`needs_scores`.

        Returns
        -------
        ndarray of bool
            True for the models to stop (they come back with ``pruned=True``).
        """
