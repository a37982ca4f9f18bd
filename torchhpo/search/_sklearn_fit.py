"""scikit-learn 1.9's ``BaseSearchCV.fit``, copied, with the training fused.

:func:`fused_fit` is scikit-learn 1.9's ``BaseSearchCV.fit`` line by line (scorers,
metadata routing, callbacks, ``check_cv``, ``_format_results``, best-index
selection, ``refit``), reusing its private helpers, with two changes:

* ``evaluate_candidates`` hands all (candidate, fold) pairs to the
  :class:`~torchhpo.search._scheduler.FusedScheduler` instead of one
  ``_fit_and_score`` job per pair;
* ``refit`` trains ``best_estimator_`` through the estimator's own ``fit`` (an engine
  pack of one) and returns it as the class the user passed.

It keeps scikit-learn's ``self`` as its first argument so that a diff against
scikit-learn's source lines up. ``tests/test_sklearn_compat.py`` fails, naming
``BaseSearchCV.fit``, when the installed scikit-learn's source of it differs from
the one copied here (:data:`torchhpo._sklearn_compat.GUARDED_SOURCES`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from inspect import signature

from sklearn.base import clone, is_classifier
from sklearn.model_selection import check_cv
from sklearn.utils.parallel import Parallel
from sklearn.utils.validation import indexable

from .._sklearn_compat import (
    _check_method_params,
    _insert_error_scores,
    _MultimetricScorer,
    _routing_enabled,
    _warn_or_raise_about_fit_failures,
)
from ._checkpoint import Journal, search_fingerprint
from ._estimators import refit as refit_estimator
from ._scheduler import FusedScheduler


def fused_fit(self, X, y=None, **params):
    """Run a search's ``fit``, training every (candidate, fold) model fused.

    Parameters
    ----------
    self : torchhpo.search._base.BaseSearchCV
        The search (with torchhpo's options ``checkpoint``, ``dtype`` ...).
    X, y, **params :
        As ``BaseSearchCV.fit``.

    Returns
    -------
    self : object
        The fitted search.
    """
    self._check_torchhpo_options()
    scorers, refit_metric = self._get_scorers()

    X, y = indexable(X, y)
    params = _check_method_params(X, params=params)
    routed_params = self._get_routed_params_for_fit(params)

    if (sample_weight := params.get("sample_weight")) is not None:
        metadata_callbacks = {"sample_weight": sample_weight}
    else:
        metadata_callbacks = None
    root_callback_ctx = self._init_callback_context(
        max_subtasks=1 + (self.refit is not False)  # refit can be str or callable
    ).call_on_fit_task_begin(estimator=self, X=X, y=y, metadata=metadata_callbacks)

    self._checked_cv_orig = check_cv(
        self.cv, y, classifier=is_classifier(self.estimator)
    )
    self._check_input_parameters(X=X, y=y, split_params=routed_params.splitter.split)
    self.n_splits_ = self._checked_cv_orig.get_n_splits(
        X, y, **routed_params.splitter.split
    )

    base_estimator = clone(self.estimator)

    parallel = Parallel(
        n_jobs=self.n_jobs, pre_dispatch=self.pre_dispatch, return_as="generator"
    )

    fit_and_score_kwargs = dict(
        scorer=scorers,
        fit_params=routed_params.estimator.fit,
        score_params=routed_params.scorer.score,
        return_train_score=self.return_train_score,
        return_n_test_samples=True,
        return_times=True,
        return_parameters=False,
        error_score=self.error_score,
        verbose=self.verbose,
    )
    journal = None
    if self.checkpoint is not None:
        fingerprint = search_fingerprint(self, X, y, routed_params.estimator.fit)
        journal = Journal.open(self.checkpoint, fingerprint)
    scheduler = FusedScheduler(
        self,
        X,
        y,
        fit_and_score_kwargs=fit_and_score_kwargs,
        parallel=parallel,
        routing=_routing_enabled(),
        journal=journal,
        continuations=self._continuations(),
    )
    results = {}
    with parallel, _closing(journal), scheduler:
        all_candidate_params = []
        all_out = []
        all_more_results = defaultdict(list)

        def evaluate_candidates(
            candidate_params, cv=None, more_results=None, callback_ctx=None
        ):
            cv = cv or self._checked_cv_orig
            candidate_params = list(candidate_params)
            n_candidates = len(candidate_params)
            n_splits = self.n_splits_

            cv_splits = list(cv.split(X, y, **routed_params.splitter.split))
            if len(cv_splits) != n_splits:
                raise ValueError(
                    f"cv.split and cv.get_n_splits return inconsistent results. "
                    f"Expected {n_splits} splits, got {len(cv_splits)}"
                )

            if self.verbose > 0:
                print(
                    f"Fitting {n_splits} folds for each of {n_candidates} "
                    f"candidates, totalling {n_candidates * n_splits} fits"
                )

            n_pairs = n_candidates * n_splits
            if callback_ctx is not None:
                evaluation_contexts = [
                    callback_ctx.subcontext(
                        task_name="candidate-split-evaluation",
                        task_id=task_id,
                    )
                    for task_id in range(n_pairs)
                ]
            else:
                evaluation_contexts = [None] * n_pairs

            out = (
                scheduler.evaluate(
                    base_estimator,
                    candidate_params,
                    cv_splits,
                    evaluation_contexts,
                )
                if n_pairs
                else []
            )

            if len(out) < 1:
                raise ValueError(
                    "No fits were performed. "
                    "Was the CV iterator empty? "
                    "Were there no candidates?"
                )

            _warn_or_raise_about_fit_failures(out, self.error_score)

            # For callable self.scoring, the return type is only know after
            # calling. If the return type is a dictionary, the error scores
            # can now be inserted with the correct key.
            if callable(self.scoring):
                _insert_error_scores(out, self.error_score)

            all_candidate_params.extend(candidate_params)
            all_out.extend(out)

            if more_results is not None:
                for key, value in more_results.items():
                    all_more_results[key].extend(value)

            nonlocal results
            results = self._format_results(
                all_candidate_params, n_splits, all_out, all_more_results
            )

            return results

        if "callback_ctx" in signature(self._run_search).parameters:
            self._run_search(evaluate_candidates, callback_ctx=root_callback_ctx)
        else:
            # custom search classes
            self._run_search(evaluate_candidates)

        # multimetric is determined here because in the case of a callable
        # self.scoring the return type is only known after calling
        first_test_score = all_out[0]["test_scores"]
        self.multimetric_ = isinstance(first_test_score, dict)

        # check refit_metric now for a callable scorer that is multimetric
        if callable(self.scoring) and self.multimetric_:
            self._check_refit_for_multimetric(first_test_score)
            refit_metric = self.refit

    # For multi-metric evaluation, store the best_index_, best_params_ and
    # best_score_ iff refit is one of the scorer names
    # In single metric evaluation, refit_metric is "score"
    if self.refit or not self.multimetric_:
        self.best_index_ = self._select_best_index(self.refit, refit_metric, results)
        if not callable(self.refit):
            self.best_score_ = results[f"mean_test_{refit_metric}"][self.best_index_]
        self.best_params_ = results["params"][self.best_index_]

    if self.refit:
        best_estimator = clone(base_estimator).set_params(
            **clone(self.best_params_, safe=False)
        )
        refit_subctx = root_callback_ctx.subcontext(task_name="refit-with-best-params")
        with refit_subctx.propagate_callback_context(best_estimator):
            refit_subctx.call_on_fit_task_begin(
                estimator=self, X=X, y=y, metadata=metadata_callbacks
            )
            refit_start_time = time.time()
            self.best_estimator_ = refit_estimator(
                best_estimator,
                X,
                y,
                routed_params.estimator.fit,
                self._mlp_device(),
                self.dtype,
            )
            refit_end_time = time.time()
        self.refit_time_ = refit_end_time - refit_start_time

        if hasattr(self.best_estimator_, "feature_names_in_"):
            self.feature_names_in_ = self.best_estimator_.feature_names_in_

        refit_subctx.call_on_fit_task_end(
            estimator=self, X=X, y=y, metadata=metadata_callbacks
        )

    # Store the only scorer not as a dict for single metric evaluation
    if isinstance(scorers, _MultimetricScorer):
        self.scorer_ = scorers._scorers
    else:
        self.scorer_ = scorers

    self.cv_results_ = results

    root_callback_ctx.call_on_fit_task_end(
        estimator=self, X=X, y=y, metadata=metadata_callbacks
    )

    return self


@contextmanager
def _closing(journal: Journal | None) -> Iterator[None]:
    """Close the checkpoint journal however the search ends (Ctrl-C included)."""
    try:
        yield
    finally:
        if journal is not None:
            journal.close()
