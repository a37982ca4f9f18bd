"""Successive halving: scikit-learn's halving searches, whose survivors keep training.

:class:`HalvingGridSearchCV` and :class:`HalvingRandomSearchCV` are scikit-learn
1.9's (``sklearn.experimental.enable_halving_search_cv``: same parameters, iterations,
``cv_results_`` with ``iter`` / ``n_resources``, ``n_resources_`` ...; instances of
scikit-learn's classes), with every iteration's (candidate, fold) models trained fused.
No experimental flag is needed.

With ``resource="max_iter"`` (or ``"step__max_iter"`` for an MLP ending a Pipeline),
an iteration does not retrain its survivors: each (candidate, fold) model continues
from where the previous iteration left it (:mod:`~torchhpo.search._continuations`),
and models that converged earlier are reused. The results are those of scikit-learn's
algorithm (each model equals the one trained from scratch with that iteration's
``max_iter``), for the cost of the last iteration's epochs. ``lbfgs`` candidates are
retrained per iteration. With ``resource="n_samples"`` (the default) each iteration
trains on scikit-learn's subsample of every fold, as index sets into the data on the
device; any other resource retrains per iteration, as scikit-learn does.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .._sklearn_compat import (
    SklearnHalvingGridSearchCV,
    SklearnHalvingRandomSearchCV,
    _fit_context,
    _num_samples,
)
from ._base import BaseSearchCV
from ._continuations import Continuations
from ._options import TORCHHPO_OPTIONS
from ._space import check_distributions


class _FusedHalving(BaseSearchCV):
    """What both halving searches add to scikit-learn's: fused, continued training."""

    def _continuations(self) -> Continuations | None:
        if self.resource.split("__")[-1] == "max_iter":
            return Continuations(self.resource)
        return None

    @_fit_context(
        # Halving*SearchCV.estimator is not validated yet
        prefer_skip_nested_validation=False
    )
    def fit(self, X, y=None, **params):
        """Run the successive-halving iterations, training every model fused.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training vectors.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            Targets.
        **params : dict of str -> object
            Parameters passed to the estimator's ``fit`` (``sample_weight``), and
            ``groups`` for the CV splitter.

        Returns
        -------
        self : object
            Instance of fitted estimator.
        """
        self._n_samples_orig = _num_samples(X)
        BaseSearchCV.fit.__wrapped__(self, X, y, **params)
        # BaseSearchCV does not set best_score_ when refit is the halving callable.
        self.best_score_ = self.cv_results_["mean_test_score"][self.best_index_]
        return self


_DOC_SHARED = """
    factor, resource, max_resources, min_resources, aggressive_elimination, cv, \
scoring, refit, error_score, return_train_score, random_state, n_jobs, verbose :
        As scikit-learn's. ``resource="max_iter"`` continues each surviving
        (candidate, fold) model from the previous iteration instead of retraining
        it; the models equal those scikit-learn's algorithm trains from scratch.
    device, dtype, progress, max_pack_size, backend, checkpoint :
        torchhpo options, as in :class:`~torchhpo.GridSearchCV`. A killed search
        rerun with the same ``checkpoint`` resumes at the model it had reached,
        continued models included, and gives the same ``cv_results_``.

    Attributes
    ----------
    n_resources_, n_candidates_, n_remaining_candidates_, max_resources_, \
min_resources_, n_possible_iterations_, n_required_iterations_, n_iterations_, \
cv_results_, best_estimator_, best_score_, best_params_, best_index_, scorer_, \
n_splits_, refit_time_, multimetric_, classes_, n_features_in_ :
        As scikit-learn's. In ``cv_results_``, a continued model's ``fit_time`` is
        the time of the epochs it added in that iteration (0 for a model that had
        converged before and was reused).
"""


class HalvingGridSearchCV(_FusedHalving, SklearnHalvingGridSearchCV):
    """Search over a grid with successive halving, training MLPs as fused packs.

    A drop-in for scikit-learn's ``HalvingGridSearchCV`` (and an instance of it).

    Parameters
    ----------
    estimator : estimator object
        The estimator to tune (see :class:`~torchhpo.GridSearchCV`).
    param_grid : dict or list of dict
        Parameter names to lists of values.
    """

    __doc__ += _DOC_SHARED

    _parameter_constraints: dict = {
        **SklearnHalvingGridSearchCV._parameter_constraints,
        **TORCHHPO_OPTIONS,
    }

    def __init__(
        self,
        estimator,
        param_grid,
        *,
        factor=3,
        resource="n_samples",
        max_resources="auto",
        min_resources="exhaust",
        aggressive_elimination=False,
        cv=5,
        scoring=None,
        refit=True,
        error_score=np.nan,
        return_train_score=True,
        random_state=None,
        n_jobs=None,
        verbose=0,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        progress: bool = True,
        max_pack_size: int | None = None,
        backend: str = "local",
        checkpoint: str | os.PathLike | None = None,
    ):
        super().__init__(
            estimator,
            param_grid,
            factor=factor,
            resource=resource,
            max_resources=max_resources,
            min_resources=min_resources,
            aggressive_elimination=aggressive_elimination,
            cv=cv,
            scoring=scoring,
            refit=refit,
            error_score=error_score,
            return_train_score=return_train_score,
            random_state=random_state,
            n_jobs=n_jobs,
            verbose=verbose,
        )
        self.device = device
        self.dtype = dtype
        self.progress = progress
        self.max_pack_size = max_pack_size
        self.backend = backend
        self.checkpoint = checkpoint


class HalvingRandomSearchCV(_FusedHalving, SklearnHalvingRandomSearchCV):
    """Randomized search with successive halving, training MLPs as fused packs.

    A drop-in for scikit-learn's ``HalvingRandomSearchCV`` (and an instance of
    it): candidates are drawn by ``ParameterSampler``, so a ``random_state`` gives
    scikit-learn's candidates.

    Parameters
    ----------
    estimator : estimator object
        The estimator to tune (see :class:`~torchhpo.GridSearchCV`).
    param_distributions : dict or list of dict
        Parameter names to lists or distributions with ``rvs`` (see
        :class:`~torchhpo.RandomizedSearchCV`).
    n_candidates : "exhaust" or int, default="exhaust"
        As scikit-learn's.
    """

    __doc__ += _DOC_SHARED

    _parameter_constraints: dict = {
        **SklearnHalvingRandomSearchCV._parameter_constraints,
        **TORCHHPO_OPTIONS,
    }

    def __init__(
        self,
        estimator,
        param_distributions,
        *,
        n_candidates="exhaust",
        factor=3,
        resource="n_samples",
        max_resources="auto",
        min_resources="smallest",
        aggressive_elimination=False,
        cv=5,
        scoring=None,
        refit=True,
        error_score=np.nan,
        return_train_score=True,
        random_state=None,
        n_jobs=None,
        verbose=0,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        progress: bool = True,
        max_pack_size: int | None = None,
        backend: str = "local",
        checkpoint: str | os.PathLike | None = None,
    ):
        super().__init__(
            estimator,
            param_distributions,
            n_candidates=n_candidates,
            factor=factor,
            resource=resource,
            max_resources=max_resources,
            min_resources=min_resources,
            aggressive_elimination=aggressive_elimination,
            cv=cv,
            scoring=scoring,
            refit=refit,
            error_score=error_score,
            return_train_score=return_train_score,
            random_state=random_state,
            n_jobs=n_jobs,
            verbose=verbose,
        )
        self.device = device
        self.dtype = dtype
        self.progress = progress
        self.max_pack_size = max_pack_size
        self.backend = backend
        self.checkpoint = checkpoint

    def _generate_candidate_params(self):
        check_distributions(self.param_distributions)
        return super()._generate_candidate_params()
