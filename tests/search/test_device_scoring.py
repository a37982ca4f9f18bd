"""Batched device scoring gives the cv_results_ of scoring through scikit-learn."""

import numpy as np
import pytest
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import torchhpo.search._device_scoring as device_scoring
import torchhpo.search._scheduler as scheduler_module
from torchhpo import GridSearchCV, MLPClassifier, MLPRegressor

from ._helpers import assert_same_scores, assert_same_structure

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FAST = {"max_iter": 40, "learning_rate_init": 0.01, "random_state": 0}


class ScoringSpy:
    """Count the models scored in batches."""

    def __init__(self, monkeypatch):
        self.scored = 0
        self.models = 0
        score_models = scheduler_module.score_models

        def spy(models, *args, **kwargs):
            out = score_models(models, *args, **kwargs)
            if device_scoring.ENABLED:
                self.scored += len(out)
                self.models += len(models)
            return out

        monkeypatch.setattr(scheduler_module, "score_models", spy)


def _both(monkeypatch, make_search, X, y, **fit_params):
    """Fit the search with device scoring, then through scikit-learn; return both."""
    spy = ScoringSpy(monkeypatch)
    device = make_search().fit(X, y, **fit_params)
    monkeypatch.setattr(device_scoring, "ENABLED", False)
    host = make_search().fit(X, y, **fit_params)
    assert_same_structure(device.cv_results_, host.cv_results_)
    assert_same_scores(device.cv_results_, host.cv_results_, rtol=0, atol=1e-12)
    assert getattr(device, "best_index_", None) == getattr(host, "best_index_", None)
    return spy, device


def test_multiclass_multimetric_with_train_scores(monkeypatch, digits):
    X, y = digits
    scoring = [
        "accuracy",
        "balanced_accuracy",
        "neg_log_loss",
        "f1_macro",
        "f1_micro",
        "f1_weighted",
        "precision_weighted",
        "recall_macro",
    ]

    def make():
        return GridSearchCV(
            MLPClassifier(hidden_layer_sizes=(16,), **FAST),
            {"alpha": [1e-4, 1e-2], "activation": ["relu", "tanh"]},
            cv=3,
            scoring=scoring,
            refit="f1_macro",
            return_train_score=True,
            progress=False,
        )

    spy, search = _both(monkeypatch, make, X, y)
    assert spy.scored >= spy.models // 2 > 0
    assert (search.cv_results_["mean_score_time"] > 0).all()


def test_binary_with_sample_weight_forwarded_to_scorers(monkeypatch, digits):
    X, y = digits
    y = (y >= 5).astype(int)
    sample_weight = np.random.RandomState(0).uniform(0.5, 2.0, size=len(y))

    def make():
        return GridSearchCV(
            MLPClassifier(hidden_layer_sizes=(8,), **FAST),
            {"alpha": [1e-4, 1e-1], "solver": ["adam", "sgd"]},
            cv=4,
            scoring={
                "auc": "roc_auc",
                "f1": "f1",
                "ll": "neg_log_loss",
                "bacc": "balanced_accuracy",
                "prec": "precision",
            },
            refit="auc",
            progress=False,
        )

    spy, _ = _both(monkeypatch, make, X, y, sample_weight=sample_weight)
    assert spy.scored == spy.models == 16


def test_regression_default_and_error_scorers(monkeypatch, diabetes):
    X, y = diabetes
    Y = np.column_stack([y, -0.5 * y + 0.1])
    for scoring in (
        None,
        ["r2", "neg_mean_squared_error", "neg_root_mean_squared_error"],
        "neg_mean_absolute_error",
    ):

        def make(scoring=scoring):
            return GridSearchCV(
                MLPRegressor(hidden_layer_sizes=(8,), **FAST),
                {"alpha": [1e-4, 1e-1]},
                cv=3,
                scoring=scoring,
                refit=False,
                progress=False,
            )

        for target in (y, Y):
            spy, _ = _both(monkeypatch, make, X, target)
            assert spy.scored == spy.models == 6
            monkeypatch.setattr(device_scoring, "ENABLED", True)


def test_multilabel(monkeypatch, digits):
    X, y = digits
    Y = np.column_stack([y % 2, y % 2 == 0, y >= 5]).astype(int)

    def make():
        return GridSearchCV(
            MLPClassifier(hidden_layer_sizes=(16,), **FAST),
            {"alpha": [1e-4, 1e-2]},
            cv=3,
            scoring=["accuracy", "f1_samples", "f1_micro", "recall_macro"],
            refit="f1_micro",
            progress=False,
        )

    spy, _ = _both(monkeypatch, make, X, Y)
    assert spy.scored > 0


def test_sklearn_mlp_is_scored_on_the_device(monkeypatch, digits):
    X, y = digits

    def make():
        return GridSearchCV(
            SklearnMLPClassifier(hidden_layer_sizes=(16,), **FAST),
            {"alpha": [1e-4, 1e-2]},
            cv=3,
            progress=False,
        )

    spy, search = _both(monkeypatch, make, X, y)
    assert spy.scored == spy.models == 6
    assert isinstance(search.best_estimator_, SklearnMLPClassifier)


def test_pipelines_are_scored_through_their_fitted_steps(monkeypatch, digits):
    X, y = digits
    pipeline = Pipeline(
        [
            ("scale", StandardScaler()),
            ("skip", "passthrough"),
            ("mlp", MLPClassifier(hidden_layer_sizes=(16,), **FAST)),
        ]
    )

    def make():
        return GridSearchCV(
            pipeline,
            {"mlp__alpha": [1e-4, 1e-2], "scale__with_std": [True, False]},
            cv=3,
            scoring=["accuracy", "neg_log_loss", "f1_weighted"],
            refit="accuracy",
            return_train_score=True,
            progress=False,
        )

    spy, _ = _both(monkeypatch, make, X, y)
    assert spy.scored == spy.models == 12


def test_callables_and_other_scorers_are_scored_by_sklearn(monkeypatch, digits):
    X, y = digits

    def scorer(estimator, X_test, y_test):
        return float(np.mean(estimator.predict(X_test) == y_test))

    for scoring in (scorer, ["accuracy", "roc_auc_ovr"]):

        def make(scoring=scoring):
            return GridSearchCV(
                MLPClassifier(**FAST),
                {"hidden_layer_sizes": [(4,)]},
                cv=2,
                scoring=scoring,
                refit=False,
                progress=False,
            )

        spy, _ = _both(monkeypatch, make, X, y)
        assert spy.scored == 0 < spy.models
        monkeypatch.setattr(device_scoring, "ENABLED", True)
