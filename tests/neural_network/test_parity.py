"""Parity of torchhpo's MLPs with scikit-learn's, run side by side in the same test.

Two kinds of evidence:

* **Exact trajectories.** Started from the same weights, without shuffling (and, for
  ``early_stopping``, on the same validation split), a float64 torchhpo model
  follows scikit-learn's training step for step: same loss curve, validation
  scores, ``n_iter_``, ``t_`` and final weights, for every solver, schedule,
  output/loss and with sample weights. Any difference in the training algorithm
  shows up here at once.
* **Statistical parity.** With their own random streams (torchhpo's differ from
  NumPy's), both libraries are trained on the same data with the same parameters
  over several seeds. The held-out score of torchhpo (default float32) must be
  within a tolerance derived from scikit-learn's own seed-to-seed spread, measured
  in the same run; likewise the first-epoch loss and ``n_iter_``.
"""

from __future__ import annotations

import functools
import itertools
import math
import warnings

import numpy as np
import pytest
from sklearn import neural_network as sk_nn
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_iris,
    make_classification,
    make_multilabel_classification,
    make_regression,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import torchhpo

# -- data ---------------------------------------------------------------------------


def _split(X, y, stratify=True):
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, random_state=0, stratify=y if stratify else None
    )
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


def _scaled_target(X, y):
    X_train, X_test, y_train, y_test = _split(X, y, stratify=False)
    mean, std = y_train.mean(axis=0), y_train.std(axis=0)
    return X_train, X_test, (y_train - mean) / std, (y_test - mean) / std


@functools.cache
def dataset(name: str):
    """Return ``X_train, X_test, y_train, y_test`` (standardized features)."""
    if name == "digits":
        return _split(*load_digits(return_X_y=True))
    if name == "breast_cancer":
        return _split(*load_breast_cancer(return_X_y=True))
    if name == "iris":
        return _split(*load_iris(return_X_y=True))
    if name == "classification":
        X, y = make_classification(
            600, 20, n_informative=8, n_classes=4, random_state=0
        )
        return _split(X, y)
    if name == "multilabel":
        X, Y = make_multilabel_classification(600, 20, n_classes=4, random_state=0)
        return _split(X, Y, stratify=False)
    if name == "regression":
        X, y = make_regression(600, 15, n_informative=8, noise=10, random_state=0)
        return _scaled_target(X, y)
    if name == "diabetes":
        return _scaled_target(*load_diabetes(return_X_y=True))
    if name == "regression_2d":
        X, Y = make_regression(
            600, 10, n_informative=6, n_targets=2, noise=5, random_state=1
        )
        return _scaled_target(X, Y)
    if name == "counts":
        rng = np.random.RandomState(0)
        X = rng.normal(size=(600, 8))
        rate = np.exp(0.5 * X[:, 0] - 0.4 * X[:, 1] + 0.3 * X[:, 2] * X[:, 3])
        return _split(X, rng.poisson(rate).astype(float), stratify=False)
    raise ValueError(name)


REGRESSION_DATA = {"regression", "diabetes", "regression_2d", "counts"}


def _classes(name):
    if name in REGRESSION_DATA:
        return sk_nn.MLPRegressor, torchhpo.MLPRegressor
    return sk_nn.MLPClassifier, torchhpo.MLPClassifier


# -- statistical parity -------------------------------------------------------------

#: Seeds per library. scikit-learn's scores over them measure its seed-to-seed noise.
SEEDS = range(6)
#: Tolerance in units of scikit-learn's seed-to-seed standard deviation. The mean of
#: 6 seeds of each library differs by about 0.58 sigma under identical behaviour;
#: with sigma estimated from 6 seeds (5 dof) a false alarm at 4 sigma has
#: probability about 1e-3 per case.
K_SIGMA = 4.0

# (dataset, parameters): every solver, every activation, binary / multiclass /
# multilabel / regression (1-D, 2-D, Poisson), every learning-rate schedule,
# Nesterov on and off, early stopping.
PARITY_CASES = [
    (
        "digits",
        dict(hidden_layer_sizes=(32,), solver="adam", activation="relu", max_iter=30),
    ),
    (
        "digits",
        dict(
            hidden_layer_sizes=(32,),
            solver="sgd",
            activation="tanh",
            learning_rate_init=0.05,
            max_iter=30,
        ),
    ),
    (
        "digits",
        dict(
            hidden_layer_sizes=(16,), solver="lbfgs", activation="logistic", max_iter=40
        ),
    ),
    (
        "breast_cancer",
        dict(
            hidden_layer_sizes=(16,), solver="adam", activation="identity", max_iter=60
        ),
    ),
    (
        "breast_cancer",
        dict(
            hidden_layer_sizes=(16,),
            solver="sgd",
            activation="logistic",
            learning_rate="adaptive",
            learning_rate_init=0.1,
            nesterovs_momentum=False,
            max_iter=60,
        ),
    ),
    (
        "breast_cancer",
        dict(
            hidden_layer_sizes=(16,),
            solver="adam",
            activation="relu",
            early_stopping=True,
            validation_fraction=0.2,
            learning_rate_init=0.01,
            max_iter=100,
        ),
    ),
    (
        "iris",
        dict(hidden_layer_sizes=(10,), solver="lbfgs", activation="tanh", max_iter=200),
    ),
    (
        "iris",
        dict(
            hidden_layer_sizes=(10,),
            solver="adam",
            activation="relu",
            learning_rate_init=0.01,
            max_iter=200,
        ),
    ),
    (
        "classification",
        dict(
            hidden_layer_sizes=(32, 16),
            solver="sgd",
            activation="relu",
            learning_rate="invscaling",
            learning_rate_init=0.1,
            power_t=0.25,
            max_iter=50,
        ),
    ),
    (
        "multilabel",
        dict(hidden_layer_sizes=(32,), solver="adam", activation="tanh", max_iter=60),
    ),
    (
        "multilabel",
        dict(
            hidden_layer_sizes=(16,),
            solver="lbfgs",
            activation="relu",
            alpha=1.0,
            max_iter=60,
        ),
    ),
    (
        "regression",
        dict(
            hidden_layer_sizes=(32,),
            solver="adam",
            activation="relu",
            learning_rate_init=0.01,
            max_iter=60,
        ),
    ),
    (
        "regression",
        dict(
            hidden_layer_sizes=(32,),
            solver="lbfgs",
            activation="identity",
            max_iter=100,
        ),
    ),
    (
        "diabetes",
        dict(
            hidden_layer_sizes=(16,),
            solver="sgd",
            activation="tanh",
            learning_rate_init=0.01,
            max_iter=60,
        ),
    ),
    (
        "diabetes",
        dict(
            hidden_layer_sizes=(16,),
            solver="adam",
            activation="relu",
            learning_rate_init=0.01,
            early_stopping=True,
            max_iter=100,
        ),
    ),
    (
        "regression_2d",
        dict(
            hidden_layer_sizes=(32,),
            solver="adam",
            activation="logistic",
            learning_rate_init=0.01,
            max_iter=60,
        ),
    ),
    (
        "counts",
        dict(
            hidden_layer_sizes=(16,),
            solver="adam",
            activation="tanh",
            loss="poisson",
            learning_rate_init=0.01,
            max_iter=60,
        ),
    ),
]


def _case_id(case):
    name, params = case
    extra = "-es" if params.get("early_stopping") else ""
    loss = "-poisson" if params.get("loss") == "poisson" else ""
    return f"{name}-{params['solver']}-{params['activation']}{extra}{loss}"


CASE_IDS = [_case_id(c) for c in PARITY_CASES]
CASES = dict(zip(CASE_IDS, PARITY_CASES, strict=True))


def _fit_summary(cls, params, seed, data):
    X_train, X_test, y_train, y_test = data
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = cls(random_state=seed, **params).fit(X_train, y_train)
    warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    curve = getattr(model, "loss_curve_", None)
    return dict(
        score=model.score(X_test, y_test),
        n_iter=model.n_iter_,
        warned=warned,
        first_loss=curve[0] if curve else math.nan,
        last_loss=model.loss_,
    )


@functools.cache
def runs(case_id: str):
    """Fit both libraries over ``SEEDS``; return per-library arrays of summaries."""
    name, params = CASES[case_id]
    data = dataset(name)
    out = {}
    for lib, cls in zip(("sklearn", "torchhpo"), _classes(name), strict=True):
        fits = [_fit_summary(cls, params, seed, data) for seed in SEEDS]
        out[lib] = {key: np.array([f[key] for f in fits]) for key in fits[0]}
    out["n_test"] = len(data[3])
    return out


def _tolerance(sklearn_values, floor):
    """``K_SIGMA`` times scikit-learn's seed-to-seed std, at least ``floor``."""
    return max(K_SIGMA * float(np.std(sklearn_values, ddof=1)), floor)


def _report(what, sk, th, tol):
    return (
        f"{what}: scikit-learn {np.round(sk, 4)} (mean {np.mean(sk):.4f}, "
        f"std {np.std(sk, ddof=1):.4f}), torchhpo {np.round(th, 4)} "
        f"(mean {np.mean(th):.4f}); |diff| {abs(np.mean(th) - np.mean(sk)):.4f} "
        f"> tolerance {tol:.4f}"
    )


@pytest.mark.slow
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_held_out_score_matches_sklearn(case_id):
    result = runs(case_id)
    sk, th = result["sklearn"]["score"], result["torchhpo"]["score"]
    # Floor: two test samples of accuracy, or 0.01 of R².
    name = CASES[case_id][0]
    floor = 0.01 if name in REGRESSION_DATA else max(0.01, 2 / result["n_test"])
    tol = _tolerance(sk, floor)
    assert abs(th.mean() - sk.mean()) <= tol, _report("held-out score", sk, th, tol)


@pytest.mark.slow
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_n_iter_behaviour_matches_sklearn(case_id):
    result = runs(case_id)
    params = CASES[case_id][1]
    max_iter = params["max_iter"]
    sk, th = result["sklearn"], result["torchhpo"]
    assert (th["n_iter"] >= 1).all() and (th["n_iter"] <= max_iter).all()
    tol = _tolerance(sk["n_iter"], 0.1 * max_iter)
    assert abs(th["n_iter"].mean() - sk["n_iter"].mean()) <= tol, _report(
        "n_iter_", sk["n_iter"], th["n_iter"], tol
    )
    # ConvergenceWarning exactly as scikit-learn's rule: stochastic solvers warn
    # only at max_iter; lbfgs warns whenever it stops at its iteration limit.
    for lib in (sk, th):
        if params["solver"] == "lbfgs":
            assert lib["warned"][lib["n_iter"] == max_iter].all()
        else:
            assert (lib["n_iter"][lib["warned"]] == max_iter).all()
            assert not lib["warned"][lib["n_iter"] < max_iter].any()
    if sk["warned"].all() and sk["n_iter"].min() == max_iter:
        # Where scikit-learn never converges in max_iter, neither should we.
        assert th["warned"].mean() >= 0.5, th["n_iter"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "case_id",
    [c for c in CASE_IDS if CASES[c][1]["solver"] != "lbfgs"],
)
def test_loss_curve_magnitudes_match_sklearn(case_id):
    result = runs(case_id)
    sk, th = result["sklearn"], result["torchhpo"]
    for key in ("first_loss", "last_loss"):
        assert np.isfinite(th[key]).all()
        tol = _tolerance(sk[key], 0.1 * abs(sk[key].mean()))
        assert abs(th[key].mean() - sk[key].mean()) <= tol, _report(
            key, sk[key], th[key], tol
        )
    # And within a factor of 2 on average, whatever the spread.
    ratio = th["first_loss"].mean() / sk["first_loss"].mean()
    assert 0.5 <= ratio <= 2.0, ratio


# -- exact trajectories -------------------------------------------------------------


def _fixed_split(*arrays, test_size, random_state=None, stratify=None, **kwargs):
    """``train_test_split`` stand-in: the last ``ceil(test_size * n)`` rows validate."""
    n_test = math.ceil(test_size * len(arrays[0]))
    out = []
    for a in arrays:
        out.extend([a[:-n_test], a[-n_test:]])
    return out


@pytest.fixture
def same_validation_split(monkeypatch):
    """Make both libraries hold out the same (last) rows for ``early_stopping``."""
    from sklearn.neural_network import _multilayer_perceptron

    from torchhpo.neural_network import _base

    monkeypatch.setattr(_multilayer_perceptron, "train_test_split", _fixed_split)
    monkeypatch.setattr(_base, "train_test_split", _fixed_split)


def _start_from(model, X, y, coefs, intercepts, params, sample_weight=None):
    """Fit ``model`` with ``params`` starting from the given weights, unshuffled.

    A one-epoch fit sets the fitted attributes; then the weights and training
    counters are replaced by a fresh start from ``coefs`` / ``intercepts`` and the
    model is trained with ``warm_start`` (a new optimizer, as a first fit).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.set_params(**{**params, "max_iter": 1}).fit(X, y)
    model.coefs_ = [c.copy() for c in coefs]
    model.intercepts_ = [b.copy() for b in intercepts]
    model.n_iter_ = 0
    model.t_ = 0
    model.loss_curve_ = []
    model._no_improvement_count = 0
    if model.early_stopping:
        model.validation_scores_ = []
        model.best_validation_score_ = -np.inf
        model.best_loss_ = None
    else:
        model.best_loss_ = np.inf
    model.set_params(warm_start=True, max_iter=params["max_iter"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(X, y, sample_weight=sample_weight)
    return any(issubclass(w.category, ConvergenceWarning) for w in caught)


def _initial_weights(rng, layer_units):
    coefs, intercepts = [], []
    for fan_in, fan_out in itertools.pairwise(layer_units):
        bound = np.sqrt(6.0 / (fan_in + fan_out))
        coefs.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
        intercepts.append(rng.uniform(-bound, bound, fan_out))
    return coefs, intercepts


def _assert_same_fit(th, sk, th_warned, sk_warned):
    assert th.n_iter_ == sk.n_iter_
    assert th_warned == sk_warned
    np.testing.assert_allclose(th.loss_, sk.loss_, rtol=1e-9, atol=1e-12)
    for got, ref in zip(
        th.coefs_ + th.intercepts_, sk.coefs_ + sk.intercepts_, strict=True
    ):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8)
    if sk.solver == "lbfgs":
        return
    assert th.t_ == sk.t_
    assert th._no_improvement_count == sk._no_improvement_count
    np.testing.assert_allclose(th.loss_curve_, sk.loss_curve_, rtol=1e-9, atol=1e-12)
    if sk.early_stopping:
        np.testing.assert_allclose(
            th.validation_scores_, sk.validation_scores_, rtol=1e-9, atol=1e-12
        )
        np.testing.assert_allclose(
            th.best_validation_score_, sk.best_validation_score_, rtol=1e-9
        )
        assert th.best_loss_ is None
    else:
        np.testing.assert_allclose(th.best_loss_, sk.best_loss_, rtol=1e-9)


def _small(name, n=300):
    X_train, _, y_train, _ = dataset(name)
    return X_train[:n], y_train[:n]


EXACT_CASES = [
    ("digits", dict(solver="adam", activation="relu")),
    ("digits", dict(solver="sgd", activation="tanh", learning_rate="invscaling")),
    (
        "digits",
        dict(
            solver="sgd",
            activation="logistic",
            learning_rate="adaptive",
            learning_rate_init=0.3,
            nesterovs_momentum=False,
            n_iter_no_change=2,
            tol=0.05,
        ),
    ),
    ("digits", dict(solver="lbfgs", activation="tanh")),
    ("breast_cancer", dict(solver="sgd", activation="identity", momentum=0.5)),
    ("breast_cancer", dict(solver="adam", activation="tanh", early_stopping=True)),
    ("multilabel", dict(solver="adam", activation="logistic", beta_1=0.8)),
    (
        "regression_2d",
        dict(
            solver="sgd",
            activation="relu",
            learning_rate="adaptive",
            learning_rate_init=0.01,
            n_iter_no_change=1,
            tol=0.02,
        ),
    ),
    ("regression", dict(solver="lbfgs", activation="relu", alpha=0.1)),
    ("diabetes", dict(solver="sgd", activation="tanh", early_stopping=True)),
    ("counts", dict(solver="adam", activation="tanh", loss="poisson")),
]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(
    "name,params",
    EXACT_CASES,
    ids=[
        f"{n}-{p['solver']}-{p['activation']}{'-es' if p.get('early_stopping') else ''}"
        for n, p in EXACT_CASES
    ],
)
def test_same_start_gives_sklearns_trajectory(
    name, params, weighted, same_validation_split
):
    X, y = _small(name)
    rng = np.random.RandomState(0)
    sample_weight = rng.uniform(0.2, 2.0, len(X)) if weighted else None
    if y.ndim == 2:
        n_outputs = y.shape[1]
    elif name in REGRESSION_DATA:
        n_outputs = 1
    else:
        n_classes = len(np.unique(y))
        n_outputs = 1 if n_classes == 2 else n_classes
    params = dict(
        hidden_layer_sizes=(12, 7) if params["solver"] == "sgd" else (12,),
        batch_size=64,
        shuffle=False,
        max_iter=25,
        **params,
    )
    layer_units = [X.shape[1], *params["hidden_layer_sizes"], n_outputs]
    coefs, intercepts = _initial_weights(rng, layer_units)
    sk_cls, th_cls = _classes(name)
    sk = sk_cls()
    th = th_cls(dtype="float64", device="cpu")
    sk_warned = _start_from(sk, X, y, coefs, intercepts, params, sample_weight)
    th_warned = _start_from(th, X, y, coefs, intercepts, params, sample_weight)
    _assert_same_fit(th, sk, th_warned, sk_warned)


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_partial_fit_continues_like_sklearn(solver):
    # After the same start, partial_fit epochs continue the optimizer state (Adam's
    # moments and step, SGD's velocities and rate) exactly as scikit-learn does.
    X, y = _small("digits")
    rng = np.random.RandomState(1)
    params = dict(
        hidden_layer_sizes=(10,),
        solver=solver,
        learning_rate="invscaling" if solver == "sgd" else "constant",
        batch_size=50,
        shuffle=False,
        max_iter=5,
    )
    coefs, intercepts = _initial_weights(rng, [X.shape[1], 10, 10])
    sk = sk_nn.MLPClassifier()
    th = torchhpo.MLPClassifier(dtype="float64", device="cpu")
    _start_from(sk, X, y, coefs, intercepts, params)
    _start_from(th, X, y, coefs, intercepts, params)
    for chunk in np.array_split(np.arange(len(X)), 3):
        sk.partial_fit(X[chunk], y[chunk])
        th.partial_fit(X[chunk], y[chunk])
        assert th.n_iter_ == sk.n_iter_
        assert th.t_ == sk.t_
        np.testing.assert_allclose(th.loss_curve_, sk.loss_curve_, rtol=1e-9)
    for got, ref in zip(
        th.coefs_ + th.intercepts_, sk.coefs_ + sk.intercepts_, strict=True
    ):
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-8)


def test_float32_validation_scores_are_exact_accuracies():
    # scikit-learn's validation scores are exact k / n_val accuracies; torchhpo's
    # must be too in float32 training (not float32-rounded ratios).
    X, y = _small("digits")
    params = dict(
        hidden_layer_sizes=(8,),
        early_stopping=True,
        learning_rate_init=0.01,
        max_iter=15,
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        th = torchhpo.MLPClassifier(dtype="float32", **params).fit(X, y)
        sk = sk_nn.MLPClassifier(**params).fit(X, y)
    n_val = math.ceil(0.1 * len(X))
    for model in (sk, th):
        scores = np.asarray(model.validation_scores_)
        assert np.array_equal(scores, np.round(scores * n_val) / n_val)
        assert model.best_validation_score_ == scores.max()
