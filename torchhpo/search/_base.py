"""The shared base of torchhpo's searches: scikit-learn's ``BaseSearchCV``, fused.

``BaseSearchCV.fit`` runs scikit-learn 1.9's ``fit``, copied into
:mod:`~torchhpo.search._sklearn_fit` with its training handed to the
:class:`~torchhpo.search._scheduler.FusedScheduler`. Everything else
(``cv_results_``, ``best_*``, ``scorer_``, delegated ``predict`` ...) is inherited
from scikit-learn's classes.
"""

from __future__ import annotations

import numbers
import os

import torch

from .._device import resolve_devices, resolve_dtype
from .._sklearn_compat import Interval, SklearnBaseSearchCV, StrOptions, _fit_context
from ._sklearn_fit import fused_fit

#: Constraints of the torchhpo-only, keyword-only search options.
TORCHHPO_OPTIONS: dict = {
    "device": [None, str, torch.device, list, tuple],
    "dtype": [None, StrOptions({"float32", "float64"}), torch.dtype],
    "progress": ["boolean"],
    "max_pack_size": [Interval(numbers.Integral, 1, None, closed="left"), None],
    "backend": [StrOptions({"local", "ray"})],
    "checkpoint": [None, str, os.PathLike],
}


class BaseSearchCV(SklearnBaseSearchCV):
    """Base class of torchhpo's searches; scikit-learn's, with fused training.

    Subclasses say which candidates to try (``_run_search``), as in scikit-learn.
    The torchhpo options ``device``, ``dtype``, ``progress``, ``max_pack_size``,
    ``backend`` and ``checkpoint`` are attributes set by the subclasses'
    constructors.
    """

    def _check_torchhpo_options(self) -> None:
        """Fail early, quoting the value, on a device or dtype that cannot be used."""
        if self.device is not None:
            resolve_devices(self.device)
        if self.dtype is not None:
            resolve_dtype(self.dtype)

    def _engine_devices(self) -> list[torch.device] | None:
        """Devices the packs are spread over (None: each MLP's own device)."""
        return None if self.device is None else resolve_devices(self.device)

    def _continuations(self):
        """Earlier iterations' models to continue (halving on ``max_iter``), or None."""
        return None

    def _mlp_device(self):
        """The device set on the MLPs (and ``best_estimator_``): the first listed."""
        if isinstance(self.device, list | tuple):
            return self.device[0]
        return self.device

    @_fit_context(
        # *SearchCV.estimator is not validated yet
        prefer_skip_nested_validation=False
    )
    def fit(self, X, y=None, **params) -> BaseSearchCV:
        """Run fit with all sets of parameters.

        Every (candidate, fold) model of an MLP (torchhpo's or scikit-learn's, alone
        or ending a Pipeline) is trained by the fused engine; other estimators are
        fitted one by one, as scikit-learn does. ``fit_time`` in ``cv_results_`` is
        each model's share of the training time of the pack it trained in.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training vectors.
        y : array-like of shape (n_samples, n_output) or (n_samples,), default=None
            Target relative to X for classification or regression.
        **params : dict of str -> object
            Parameters passed to the ``fit`` method of the estimator (e.g.
            ``sample_weight``, split along with ``X`` and ``y``), the scorer, and
            the CV splitter (``groups``).

        Returns
        -------
        self : object
            Instance of fitted estimator.
        """
        return fused_fit(self, X, y, **params)
