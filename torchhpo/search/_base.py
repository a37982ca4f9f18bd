"""The shared base of torchhpo's searches: scikit-learn's ``BaseSearchCV``, fused.

``BaseSearchCV.fit`` runs scikit-learn 1.9's ``fit``, copied into
:mod:`~torchhpo.search._sklearn_fit` with its training handed to the
:class:`~torchhpo.search._scheduler.FusedScheduler`. Everything else
(``cv_results_``, ``best_*``, ``scorer_``, delegated ``predict`` ...) is inherited
from scikit-learn's classes.
"""

from __future__ import annotations

from .._sklearn_compat import SklearnBaseSearchCV, _fit_context
from ._options import SearchOptions
from ._sklearn_fit import fused_fit


class BaseSearchCV(SearchOptions, SklearnBaseSearchCV):
    """Base class of torchhpo's searches; scikit-learn's, with fused training.

    Subclasses say which candidates to try (``_run_search``), as in scikit-learn.
    The torchhpo options ``device``, ``dtype``, ``progress``, ``max_pack_size``,
    ``backend`` and ``checkpoint`` are attributes set by the subclasses'
    constructors (:class:`~torchhpo.search._options.SearchOptions`).
    """

    def _continuations(self):
        """Earlier iterations' models to continue (halving on ``max_iter``), or None."""
        return None

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
