"""Behaviours scikit-learn's own search tests hold, run side by side with its classes.

Each test runs scikit-learn's search and torchhpo's on the same user estimator and
compares what the user's object observes (issue 19).
"""

import warnings

import numpy as np
import pytest
from sklearn import model_selection as sk
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_classification
from sklearn.experimental import enable_halving_search_cv  # noqa: F401

import torchhpo


class _NoneFromFit(ClassifierMixin, BaseEstimator):
    """An estimator whose ``fit`` returns None (scikit-learn tolerates it)."""

    def __init__(self, a=None):
        self.a = a

    def fit(self, X, y, r=None):
        self.r_ = r

    def predict(self, X):
        return np.zeros(len(X))


@pytest.mark.parametrize("name", ["GridSearchCV", "RandomizedSearchCV"])
def test_fit_returning_none_still_gives_the_fitted_best_estimator(name):
    X, y = make_classification(n_samples=40, random_state=0)
    estimators = {}
    for module in (sk, torchhpo):
        search = getattr(module, name)(_NoneFromFit(), {"a": [1, 2]}, cv=2)
        estimators[module] = search.fit(X, y, r=42).best_estimator_
    assert isinstance(estimators[torchhpo], _NoneFromFit)
    assert estimators[torchhpo].r_ == estimators[sk].r_ == 42


def _counting_classifier(calls: list):
    class Counting(ClassifierMixin, BaseEstimator):
        """Records every ``set_params`` and ``fit`` made on its instances."""

        def __init__(self, a=0):
            self.a = a

        def set_params(self, **params):
            calls.append(("set_params", params))
            return super().set_params(**params)

        def fit(self, X, y):
            calls.append(("fit", len(X)))
            self.classes_ = np.unique(y)
            return self

        def predict(self, X):
            return np.full(len(X), self.classes_[self.a % len(self.classes_)])

    return Counting()


@pytest.mark.parametrize(
    "name, extra",
    [
        ("HalvingGridSearchCV", {"random_state": 0}),
        ("HalvingRandomSearchCV", {"n_candidates": 8, "random_state": 0}),
        ("GridSearchCV", {}),
        ("RandomizedSearchCV", {"n_iter": 8, "random_state": 0}),
    ],
)
def test_one_set_params_per_fit_as_scikit_learn(name, extra):
    X, y = make_classification(n_samples=200, random_state=0)
    calls = {}
    for module in (sk, torchhpo):
        calls[module] = []
        search = getattr(module, name)(
            _counting_classifier(calls[module]),
            {"a": list(range(8))},
            cv=2,
            refit=False,
            **extra,
        )
        search.fit(X, y)
    assert any(kind == "fit" for kind, _ in calls[torchhpo])
    assert sorted(map(repr, calls[torchhpo])) == sorted(map(repr, calls[sk]))


def test_a_diverging_early_stopping_model_is_scored_as_scikit_learn():
    # test_mlp.py::test_mlp_diverging_loss inside a search: the model is fitted
    # (its best weights kept) and scored, not given error_score.
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPRegressor

    X, y = load_iris(return_X_y=True)
    params = dict(
        hidden_layer_sizes=100,
        activation="identity",
        solver="sgd",
        learning_rate_init=1,
        max_iter=20,
        early_stopping=True,
        n_iter_no_change=10,
        random_state=0,
    )
    scores = {}
    for module in (sk, torchhpo):
        search = module.GridSearchCV(
            MLPRegressor(**params), {"alpha": [1e-4]}, cv=3, error_score="raise"
        )
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            search.fit(X, y)
        scores[module] = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores[sk]).all()
    assert np.isfinite(scores[torchhpo]).all()
