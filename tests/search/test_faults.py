"""Failing candidates and bad input, handled as scikit-learn's search handles them."""

import warnings

import numpy as np
import pytest
from sklearn import model_selection as sk
from sklearn.exceptions import ConvergenceWarning, FitFailedWarning
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

import torchhpo

from ._helpers import EngineSpy, assert_same_scores, forbid_training


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def float32_mlp(**params):
    """Float32 SGD on a linear MLP: a huge learning rate overflows to inf."""
    defaults = dict(
        hidden_layer_sizes=(8,),
        activation="identity",
        solver="sgd",
        max_iter=8,
        random_state=0,
        device="cpu",
        dtype="float32",
    )
    return torchhpo.MLPClassifier(**{**defaults, **params})


GOOD = [1e-3, 1e-2]
DIVERGING = 1e6


def split_scores(results, index):
    keys = [k for k in results if k.startswith("split") and "test" in k]
    return np.array([results[k][index] for k in keys])


@pytest.mark.slow
def test_a_diverging_candidate_is_isolated(digits_small, monkeypatch):
    X, y = digits_small
    spy = EngineSpy(monkeypatch)
    grid = {"learning_rate_init": [GOOD[0], DIVERGING, GOOD[1]]}
    with pytest.warns(FitFailedWarning, match="non-finite parameter weights"):
        ours = torchhpo.GridSearchCV(float32_mlp(), grid, cv=3, progress=False)
        ours.fit(X, y)
    # The diverging models trained in the same pack as the others ...
    assert len(spy.calls) == 1 and spy.n_models == 9
    results = ours.cv_results_
    assert np.isnan(split_scores(results, 1)).all()
    assert results["rank_test_score"][1] == 3
    # ... whose scores are exactly those of a search without the diverging one,
    alone = torchhpo.GridSearchCV(
        float32_mlp(), {"learning_rate_init": GOOD}, cv=3, progress=False
    ).fit(X, y)
    for ours_index, alone_index in ((0, 0), (2, 1)):
        np.testing.assert_array_equal(
            split_scores(results, ours_index),
            split_scores(alone.cv_results_, alone_index),
        )
    # ... and scikit-learn's search, fitting each model alone, agrees.
    with pytest.warns(FitFailedWarning):
        theirs = sk.GridSearchCV(float32_mlp(), grid, cv=3).fit(X, y)
    assert_same_scores(results, theirs.cv_results_)


def test_diverging_candidate_with_error_score_raise(digits_small):
    X, y = digits_small
    grid = {"learning_rate_init": [GOOD[0], DIVERGING]}
    with pytest.raises(ValueError) as theirs:
        sk.GridSearchCV(float32_mlp(), grid, cv=3, error_score="raise").fit(X, y)
    with pytest.raises(type(theirs.value)) as ours:
        torchhpo.GridSearchCV(
            float32_mlp(), grid, cv=3, error_score="raise", progress=False
        ).fit(X, y)
    assert str(ours.value) == str(theirs.value)


def test_numeric_error_score(digits_small):
    X, y = digits_small
    grid = {"learning_rate_init": [GOOD[0], DIVERGING]}
    kwargs = dict(cv=3, error_score=-1.0, return_train_score=True)
    with pytest.warns(FitFailedWarning):
        ours = torchhpo.GridSearchCV(float32_mlp(), grid, progress=False, **kwargs)
        ours.fit(X, y)
    with pytest.warns(FitFailedWarning):
        theirs = sk.GridSearchCV(float32_mlp(), grid, **kwargs).fit(X, y)
    assert_same_scores(ours.cv_results_, theirs.cv_results_)
    assert (split_scores(ours.cv_results_, 1) == -1.0).all()


def fit_failed_messages(caught):
    """Last line (the exception) of each failure summary in FitFailedWarnings."""
    return [
        str(w.message).strip().splitlines()[-1]
        for w in caught
        if w.category is FitFailedWarning
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "bad", [{"alpha": -1.0}, {"hidden_layer_sizes": (0,)}, {"solver": "newton"}]
)
def test_invalid_candidate_value_gets_error_score(digits_small, bad):
    X, y = digits_small
    ((name, value),) = bad.items()
    grid = [{"alpha": [1e-4, 1e-2]}, {name: [value]}]
    estimator = float32_mlp(activation="relu", learning_rate_init=1e-2)
    with pytest.warns(FitFailedWarning) as ours_warnings:
        ours = torchhpo.GridSearchCV(estimator, grid, cv=3, progress=False)
        ours.fit(X, y)
    with pytest.warns(FitFailedWarning) as theirs_warnings:
        theirs = sk.GridSearchCV(estimator, grid, cv=3).fit(X, y)
    assert np.isnan(ours.cv_results_["mean_test_score"][2])
    assert_same_scores(ours.cv_results_, theirs.cv_results_)
    assert fit_failed_messages(ours_warnings) == fit_failed_messages(theirs_warnings)
    # The failure reads as scikit-learn's own MLP's.
    with pytest.warns(FitFailedWarning) as sklearn_warnings:
        sk.GridSearchCV(SklearnMLPClassifier(max_iter=2), grid, cv=3).fit(X, y)
    assert fit_failed_messages(ours_warnings) == fit_failed_messages(sklearn_warnings)


def test_invalid_candidate_value_with_error_score_raise(digits_small, monkeypatch):
    X, y = digits_small
    grid = {"alpha": [1e-4, -1.0]}
    estimator = SklearnMLPClassifier(hidden_layer_sizes=(8,), max_iter=5)
    with pytest.raises(InvalidParameterError) as theirs:
        sk.GridSearchCV(estimator, grid, cv=3, error_score="raise").fit(X, y)
    forbid_training(monkeypatch)  # raised before any training
    with pytest.raises(InvalidParameterError) as ours:
        torchhpo.GridSearchCV(
            estimator, grid, cv=3, error_score="raise", progress=False
        ).fit(X, y)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize(
    "estimator, grid, name",
    [
        (float32_mlp(), {"alpha": [1e-4], "alpah": [1.0]}, "alpah"),
        (
            Pipeline([("scale", StandardScaler()), ("mlp", float32_mlp())]),
            {"mlp__alpha": [1e-4], "mlp__learning_rat": [1e-3]},
            "learning_rat",
        ),
    ],
)
def test_unknown_parameter_name_fails_before_training(
    digits_small, monkeypatch, estimator, grid, name
):
    X, y = digits_small
    with pytest.raises(ValueError, match=name) as theirs:
        sk.GridSearchCV(estimator, grid, cv=3).fit(X, y)
    forbid_training(monkeypatch)
    with pytest.raises(type(theirs.value), match=name) as ours:
        torchhpo.GridSearchCV(estimator, grid, cv=3, progress=False).fit(X, y)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.slow
def test_a_fold_missing_a_class_behaves_as_scikit_learn(digits_small):
    X, y = digits_small
    order = np.argsort(y, kind="stable")
    X, y = X[order], y[order]  # KFold without shuffling: folds miss classes
    grid = {"alpha": [1e-4, 1e-1]}
    estimator = float32_mlp(activation="relu", learning_rate_init=1e-2)
    ours = torchhpo.GridSearchCV(
        estimator, grid, cv=sk.KFold(3), progress=False, return_train_score=True
    ).fit(X, y)
    theirs = sk.GridSearchCV(
        estimator, grid, cv=sk.KFold(3), return_train_score=True
    ).fit(X, y)
    assert_same_scores(ours.cv_results_, theirs.cv_results_)


@pytest.mark.slow
def test_bad_data_fails_as_scikit_learn(digits_small):
    X, y = digits_small
    X = X.copy()
    X[0, 0] = np.nan  # in the training rows of two folds out of three
    grid = {"alpha": [1e-4, 1e-1]}
    kwargs = dict(cv=3, refit=False)
    with pytest.warns(FitFailedWarning) as ours_warnings:
        ours = torchhpo.GridSearchCV(float32_mlp(), grid, progress=False, **kwargs)
        ours.fit(X, y)
    with pytest.warns(FitFailedWarning) as theirs_warnings:
        theirs = sk.GridSearchCV(float32_mlp(), grid, **kwargs).fit(X, y)
    assert_same_scores(ours.cv_results_, theirs.cv_results_)
    assert fit_failed_messages(ours_warnings) == fit_failed_messages(theirs_warnings)
    with pytest.raises(ValueError) as theirs_error:
        sk.GridSearchCV(float32_mlp(), grid, cv=3).fit(X, y)
    with pytest.raises(type(theirs_error.value)) as ours_error:
        torchhpo.GridSearchCV(float32_mlp(), grid, cv=3, progress=False).fit(X, y)
    assert str(ours_error.value) == str(theirs_error.value)
