"""The estimator forms a search accepts, each against scikit-learn's search."""

import warnings

import numpy as np
import pytest
from sklearn import model_selection as sk
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.neural_network import MLPRegressor as SklearnMLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

import torchhpo

from ._helpers import (
    DEVICE_SCORING,
    EngineSpy,
    assert_same_scores,
    assert_same_structure,
)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


SMALL = dict(hidden_layer_sizes=(8,), max_iter=6, random_state=0)


def torch_mlp(cls=torchhpo.MLPClassifier, **params):
    return cls(**{**SMALL, "device": "cpu", "dtype": "float64", **params})


def test_scikit_learns_mlp_is_translated_and_given_back(digits_small, monkeypatch):
    X, y = digits_small
    spy = EngineSpy(monkeypatch)
    param_grid = {"alpha": [1e-4, 1e-1], "solver": ["adam", "sgd"]}
    ours = torchhpo.GridSearchCV(
        SklearnMLPClassifier(**SMALL),
        param_grid,
        cv=3,
        device="cpu",
        dtype="float64",
        progress=False,
    ).fit(X, y)
    assert spy.n_models == 4 * 3
    # scikit-learn's search of the translated estimator fits each model alone.
    theirs = sk.GridSearchCV(torch_mlp(), param_grid, cv=3).fit(X, y)
    assert_same_scores(ours.cv_results_, theirs.cv_results_)

    best = ours.best_estimator_
    assert type(best) is SklearnMLPClassifier
    assert (
        best.get_params()
        == SklearnMLPClassifier(**SMALL, **ours.best_params_).get_params()
    )
    for ours_coef, theirs_coef in zip(
        best.coefs_, theirs.best_estimator_.coefs_, strict=True
    ):
        np.testing.assert_array_equal(ours_coef, theirs_coef)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X))
    # The returned scikit-learn estimator keeps working without torchhpo.
    best.partial_fit(X, y)


def test_scikit_learn_cv_results_structure_with_its_mlp(digits_small):
    X, y = digits_small
    param_grid = {"hidden_layer_sizes": [(4,), (6, 3)], "activation": ["relu", "tanh"]}
    ours = torchhpo.GridSearchCV(
        SklearnMLPClassifier(**SMALL), param_grid, cv=3, progress=False
    ).fit(X, y)
    theirs = sk.GridSearchCV(SklearnMLPClassifier(**SMALL), param_grid, cv=3).fit(X, y)
    assert_same_structure(ours.cv_results_, theirs.cv_results_)


@pytest.mark.slow
@pytest.mark.parametrize("final", ["torchhpo", "sklearn"])
def test_pipeline_ending_in_an_mlp(digits_small, monkeypatch, final):
    X, y = digits_small
    spy = EngineSpy(monkeypatch)
    mlp = torch_mlp() if final == "torchhpo" else SklearnMLPClassifier(**SMALL)
    pipe = Pipeline([("scale", StandardScaler()), ("pca", PCA(8)), ("mlp", mlp)])
    param_grid = {
        "scale": [StandardScaler(), MinMaxScaler()],
        "pca__whiten": [False, True],
        "mlp__alpha": [1e-4, 1e-1],
        "mlp__solver": ["adam", "sgd"],
    }
    ours = torchhpo.GridSearchCV(
        pipe, param_grid, cv=3, device="cpu", dtype="float64", progress=False
    ).fit(X, y)
    assert spy.n_models == 16 * 3 and spy.transfers == 1

    reference = Pipeline([("scale", StandardScaler()), ("pca", PCA(8)), ("mlp", mlp)])
    reference.set_params(mlp=torch_mlp())
    theirs = sk.GridSearchCV(reference, param_grid, cv=3).fit(X, y)
    assert_same_scores(ours.cv_results_, theirs.cv_results_)
    assert ours.best_params_ == theirs.best_params_

    best = ours.best_estimator_
    assert isinstance(best, Pipeline)
    assert type(best.steps[-1][1]) is type(mlp)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.slow
def test_pipeline_parameters_of_earlier_steps_only(digits_small):
    X, y = digits_small
    pipe = Pipeline([("pca", PCA()), ("mlp", torch_mlp())])
    param_grid = {"pca__n_components": [4, 8]}  # the MLP's input width changes
    ours = torchhpo.GridSearchCV(pipe, param_grid, cv=3, progress=False).fit(X, y)
    theirs = sk.GridSearchCV(pipe, param_grid, cv=3).fit(X, y)
    assert_same_scores(ours.cv_results_, theirs.cv_results_)


@pytest.mark.slow
def test_pipeline_with_a_passthrough_step(digits_small, monkeypatch):
    X, y = digits_small
    spy = EngineSpy(monkeypatch)
    pipe = Pipeline(
        [("scale", StandardScaler()), ("skip", "passthrough"), ("mlp", torch_mlp())]
    )
    param_grid = {"mlp__alpha": [1e-4, 1e-1]}
    ours = torchhpo.GridSearchCV(pipe, param_grid, cv=3, progress=False).fit(X, y)
    theirs = sk.GridSearchCV(pipe, param_grid, cv=3).fit(X, y)
    assert spy.n_models == 6
    assert_same_scores(ours.cv_results_, theirs.cv_results_, **DEVICE_SCORING)


@pytest.mark.slow
@pytest.mark.parametrize(
    "estimator, param_grid",
    [
        (LogisticRegression(max_iter=200), {"C": [0.01, 1.0]}),
        (
            Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression())]),
            {"lr__C": [0.1, 1.0], "scale__with_std": [True, False]},
        ),
    ],
)
def test_other_estimators_give_what_scikit_learn_gives(
    digits_small, monkeypatch, estimator, param_grid
):
    X, y = digits_small
    spy = EngineSpy(monkeypatch)
    kwargs = dict(cv=3, return_train_score=True, scoring=["accuracy", "f1_macro"])
    ours = torchhpo.GridSearchCV(
        estimator, param_grid, refit="accuracy", progress=False, **kwargs
    ).fit(X, y)
    theirs = sk.GridSearchCV(estimator, param_grid, refit="accuracy", **kwargs).fit(
        X, y
    )
    assert spy.calls == []
    assert_same_structure(ours.cv_results_, theirs.cv_results_)
    assert_same_scores(ours.cv_results_, theirs.cv_results_)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.slow
def test_mixed_candidates_replacing_the_final_step(digits_small, monkeypatch):
    X, y = digits_small
    spy = EngineSpy(monkeypatch)
    pipe = Pipeline([("scale", StandardScaler()), ("model", torch_mlp())])
    param_grid = [
        {"model": [torch_mlp()], "model__alpha": [1e-4, 1e-1]},
        {"model": [LogisticRegression()], "model__C": [0.1, 1.0]},
    ]
    ours = torchhpo.GridSearchCV(pipe, param_grid, cv=3, progress=False).fit(X, y)
    theirs = sk.GridSearchCV(pipe, param_grid, cv=3).fit(X, y)
    assert spy.n_models == 2 * 3
    assert_same_scores(ours.cv_results_, theirs.cv_results_)


@pytest.mark.slow
@pytest.mark.parametrize(
    "make", [lambda: torch_mlp(torchhpo.MLPRegressor), lambda: "sklearn"]
)
def test_regression_search(diabetes, make):
    X, y = diabetes
    estimator = make()
    param_grid = {
        "alpha": [1e-4, 1e-1],
        "solver": ["adam", "sgd"],
        "learning_rate_init": [1e-3, 1e-2],
        "hidden_layer_sizes": [(8,), (4, 4)],
    }
    kwargs = dict(cv=3, scoring=["r2", "neg_mean_squared_error"], refit="r2")
    if estimator == "sklearn":
        estimator = SklearnMLPRegressor(**SMALL)
        kwargs_ours = dict(device="cpu", dtype="float64")
    else:
        kwargs_ours = {}
    ours = torchhpo.GridSearchCV(
        estimator, param_grid, progress=False, **kwargs, **kwargs_ours
    ).fit(X, y)
    reference = torch_mlp(torchhpo.MLPRegressor)
    theirs = sk.GridSearchCV(reference, param_grid, **kwargs).fit(X, y)
    assert_same_scores(ours.cv_results_, theirs.cv_results_, rtol=1e-9, atol=1e-12)
    assert ours.best_params_ == theirs.best_params_
    assert type(ours.best_estimator_) is type(estimator)
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-9)


def test_regression_with_a_poisson_loss_candidate(diabetes):
    X, y = diabetes
    y = np.exp(y / 2)
    param_grid = {"loss": ["squared_error", "poisson"], "alpha": [1e-4, 1e-2]}
    estimator = torch_mlp(torchhpo.MLPRegressor)
    ours = torchhpo.GridSearchCV(estimator, param_grid, cv=3, progress=False)
    theirs = sk.GridSearchCV(estimator, param_grid, cv=3)
    assert_same_scores(
        ours.fit(X, y).cv_results_, theirs.fit(X, y).cv_results_, **DEVICE_SCORING
    )


def test_ridge_regression_delegates(diabetes):
    X, y = diabetes
    ours = torchhpo.GridSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, progress=False)
    theirs = sk.GridSearchCV(Ridge(), {"alpha": [0.1, 1.0]})
    assert_same_scores(ours.fit(X, y).cv_results_, theirs.fit(X, y).cv_results_)
