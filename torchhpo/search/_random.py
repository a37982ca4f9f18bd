"""RandomizedSearchCV: scikit-learn's sampled search, with fused training."""

from __future__ import annotations

import os

import numpy as np
import torch
from sklearn.model_selection import RandomizedSearchCV as _SklearnRandomizedSearchCV

from ._base import BaseSearchCV
from ._options import TORCHHPO_OPTIONS
from ._space import check_distributions


class RandomizedSearchCV(BaseSearchCV, _SklearnRandomizedSearchCV):
    """Randomized search over parameter settings, training MLPs as fused packs.

    A drop-in for :class:`sklearn.model_selection.RandomizedSearchCV` (and an
    instance of it): candidates are drawn by scikit-learn's ``ParameterSampler``,
    so a ``random_state`` gives the candidates scikit-learn's search gives. Models
    are trained as in :class:`~torchhpo.GridSearchCV`.

    Parameters
    ----------
    estimator : estimator object
        The estimator to tune (see :class:`~torchhpo.GridSearchCV`).
    param_distributions : dict or list of dict
        Parameter names to lists (sampled uniformly) or distributions with an
        ``rvs`` method, such as ``scipy.stats.loguniform(1e-5, 1e-1)``. A
        distribution that cannot be sampled (``scipy.stats.randint(0.0001, 0.001)``)
        is rejected before anything is trained, with an error naming its
        parameter.
    n_iter : int, default=10
        Number of parameter settings sampled.
    scoring, n_jobs, refit, cv, verbose, pre_dispatch, random_state, error_score, \
return_train_score :
        As scikit-learn's (see :class:`~torchhpo.GridSearchCV` for ``n_jobs`` and
        ``error_score``).
    device, dtype, progress, max_pack_size, backend, checkpoint :
        torchhpo options, as in :class:`~torchhpo.GridSearchCV`. To resume from a
        ``checkpoint``, ``random_state`` must be fixed, so that the rerun draws
        the same candidates.

    Attributes
    ----------
    cv_results_, best_estimator_, best_score_, best_params_, best_index_, \
scorer_, n_splits_, refit_time_, multimetric_, classes_, n_features_in_, \
feature_names_in_ :
        As :class:`~torchhpo.GridSearchCV`'s.

    See Also
    --------
    GridSearchCV : Exhaustive search over a parameter grid.

    Examples
    --------
    >>> from scipy.stats import loguniform
    >>> from sklearn.datasets import load_digits
    >>> from torchhpo import MLPClassifier, RandomizedSearchCV
    >>> X, y = load_digits(return_X_y=True)
    >>> search = RandomizedSearchCV(
    ...     MLPClassifier(max_iter=20),
    ...     {"solver": ["adam", "sgd"], "alpha": loguniform(1e-4, 1e-3)},
    ...     n_iter=4, cv=3, random_state=0,
    ... ).fit(X / 16, y)  # doctest: +SKIP
    """

    _parameter_constraints: dict = {
        **_SklearnRandomizedSearchCV._parameter_constraints,
        **TORCHHPO_OPTIONS,
    }

    def __init__(
        self,
        estimator,
        param_distributions,
        *,
        n_iter=10,
        scoring=None,
        n_jobs=None,
        refit=True,
        cv=None,
        verbose=0,
        pre_dispatch="2*n_jobs",
        random_state=None,
        error_score=np.nan,
        return_train_score=False,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        progress: bool = True,
        max_pack_size: int | None = None,
        backend: str = "local",
        checkpoint: str | os.PathLike | None = None,
    ):
        super().__init__(
            estimator=estimator,
            param_distributions=param_distributions,
            n_iter=n_iter,
            scoring=scoring,
            n_jobs=n_jobs,
            refit=refit,
            cv=cv,
            verbose=verbose,
            pre_dispatch=pre_dispatch,
            random_state=random_state,
            error_score=error_score,
            return_train_score=return_train_score,
        )
        self.device = device
        self.dtype = dtype
        self.progress = progress
        self.max_pack_size = max_pack_size
        self.backend = backend
        self.checkpoint = checkpoint

    def _run_search(self, evaluate_candidates, *, callback_ctx=None):
        """Check the distributions, then sample and evaluate as scikit-learn."""
        check_distributions(self.param_distributions)
        super()._run_search(evaluate_candidates, callback_ctx=callback_ctx)
