"""The estimators' surface, side by side with scikit-learn's MLPs.

Pickling, ``to_sklearn`` / ``from_sklearn``, ``clone`` and ``Pipeline``,
``warm_start`` and ``partial_fit`` semantics, fitted attributes, string labels,
warnings, verbose output and feature names. Exact comparisons use ``dtype="float64"``
with ``shuffle=False`` (no random stream involved), where torchhpo and
scikit-learn run the same arithmetic.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
import warnings

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import neural_network as sk
from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

import torchhpo as th

QUIET = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

X, Y_BINARY = make_classification(
    n_samples=60, n_features=5, n_informative=3, random_state=0
)
_, Y_MULTI = make_classification(
    n_samples=60, n_features=5, n_informative=3, n_classes=3, random_state=0
)
Y_MULTILABEL = np.c_[Y_BINARY, Y_MULTI == 2, X[:, 0] > 0].astype(int)
X_REG, Y_REG = make_regression(n_samples=60, n_features=5, noise=1.0, random_state=0)
Y_REG2 = np.c_[Y_REG, -0.5 * Y_REG + X_REG[:, 0]]

#: Target name -> (X, y, kind).
TARGETS = {
    "binary": (X, Y_BINARY, "classifier"),
    "multiclass": (X, Y_MULTI, "classifier"),
    "multilabel": (X, Y_MULTILABEL, "classifier"),
    "regression-1d": (X_REG, Y_REG, "regressor"),
    "regression-2d": (X_REG, Y_REG2, "regressor"),
}


def make_pair(kind: str, **params):
    """Return a scikit-learn MLP and a torchhpo MLP with the same parameters."""
    params = {"hidden_layer_sizes": (8,), "max_iter": 20, **params}
    options = {"device": "cpu"}
    for option in ("device", "dtype"):
        if option in params:
            options[option] = params.pop(option)
    if kind == "classifier":
        return sk.MLPClassifier(**params), th.MLPClassifier(**params, **options)
    return sk.MLPRegressor(**params), th.MLPRegressor(**params, **options)


def exact_pair(kind: str, **params):
    """A pair whose training involves no random stream but the initial weights."""
    return make_pair(kind, shuffle=False, random_state=0, dtype="float64", **params)


def fitted_attributes(est) -> dict:
    """Describe the public fitted attributes: names, types, shapes, dtypes."""

    def describe(value):
        if isinstance(value, np.ndarray):
            return ("ndarray", value.shape, value.dtype.kind)
        if isinstance(value, list):
            return ("list", len(value), [describe(v) for v in value[:3]])
        if isinstance(value, (bool, np.bool_)):
            return ("bool",)
        if isinstance(value, (int, np.integer)):
            return ("int",)
        if isinstance(value, (float, np.floating)):
            return ("float",)
        if isinstance(value, str):
            return ("str", value)
        return (type(value).__name__,)

    return {
        name: describe(value)
        for name, value in vars(est).items()
        if name.endswith("_") and not name.startswith("_")
    }


def assert_same_weights(a, b, rtol=1e-9):
    for name in ("coefs_", "intercepts_"):
        for wa, wb in zip(getattr(a, name), getattr(b, name), strict=True):
            assert_allclose(wa, wb, rtol=rtol, atol=1e-12)


def assert_same_predictions(ours, theirs, X_):
    """``predict`` (and probabilities, ``score``) of two models agree."""
    if hasattr(ours, "predict_proba"):
        assert_array_equal(ours.predict(X_), theirs.predict(X_))
        for method in ("predict_proba", "predict_log_proba"):
            with np.errstate(divide="ignore"):  # log(0) of saturated probabilities
                expected = getattr(theirs, method)(X_)
                got = getattr(ours, method)(X_)
            assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    else:
        assert_allclose(ours.predict(X_), theirs.predict(X_), rtol=1e-9)
    y_ = theirs.predict(X_)
    assert ours.score(X_, y_) == pytest.approx(theirs.score(X_, y_))


def tensors_inside(obj, seen=None) -> list:
    """Return every torch.Tensor reachable from ``obj``'s attributes."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        children = list(obj)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        children = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = list(vars(obj).values())
    else:
        return []
    return [t for child in children for t in tensors_inside(child, seen)]


# -- pickle ----------------------------------------------------------------------
@QUIET
@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_pickle_round_trip(target, solver):
    X_, y_, kind = TARGETS[target]
    sk_est, th_est = make_pair(kind, solver=solver, random_state=0)
    sk_est.fit(X_, y_)
    th_est.fit(X_, y_)
    sk_loaded = pickle.loads(pickle.dumps(sk_est))
    th_loaded = pickle.loads(pickle.dumps(th_est))
    assert_array_equal(th_loaded.predict(X_), th_est.predict(X_))
    assert_array_equal(sk_loaded.predict(X_), sk_est.predict(X_))
    if kind == "classifier":
        assert_array_equal(th_loaded.predict_proba(X_), th_est.predict_proba(X_))
    assert fitted_attributes(th_loaded) == fitted_attributes(th_est)
    assert fitted_attributes(th_loaded) == fitted_attributes(sk_loaded)
    # Only NumPy inside: a model pickled on a CUDA machine loads without CUDA.
    assert tensors_inside(th_est) == []


@QUIET
def test_pickled_model_keeps_training():
    sk_est, th_est = exact_pair("classifier")
    for est in (sk_est, th_est):
        est.partial_fit(X, Y_MULTI, classes=np.unique(Y_MULTI))
    th_loaded = pickle.loads(pickle.dumps(th_est))
    th_est.partial_fit(X, Y_MULTI)
    th_loaded.partial_fit(X, Y_MULTI)
    assert_same_weights(th_loaded, th_est, rtol=0)
    sk_est.partial_fit(X, Y_MULTI)
    assert th_loaded.t_ == sk_est.t_
    assert len(th_loaded.loss_curve_) == len(sk_est.loss_curve_)


# -- to_sklearn / from_sklearn -------------------------------------------------------
@QUIET
@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize(
    "params",
    [{}, {"solver": "lbfgs"}, {"early_stopping": True}, {"activation": "tanh"}],
    ids=["adam", "lbfgs", "early_stopping", "tanh"],
)
def test_to_sklearn_predicts_as_we_do(target, params):
    X_, y_, kind = TARGETS[target]
    _, th_est = make_pair(kind, random_state=0, **params)
    th_est.fit(X_, y_)
    sk_est = th_est.to_sklearn()
    expected = sk.MLPClassifier if kind == "classifier" else sk.MLPRegressor
    assert type(sk_est) is expected
    check_is_fitted(sk_est)
    assert_same_predictions(th_est, sk_est, X_)
    ours = th_est.get_params()
    ours.pop("device"), ours.pop("dtype")
    assert sk_est.get_params() == ours
    assert fitted_attributes(sk_est) == fitted_attributes(th_est)


@QUIET
def test_to_sklearn_poisson_regressor():
    y = np.exp(X_REG[:, 0] / 2)
    _, th_est = make_pair("regressor", loss="poisson", random_state=0)
    th_est.fit(X_REG, y)
    sk_est = th_est.to_sklearn()
    assert sk_est.out_activation_ == "exp"
    assert_same_predictions(th_est, sk_est, X_REG)


@QUIET
def test_to_sklearn_shares_no_state():
    _, th_est = make_pair("classifier", random_state=0)
    th_est.fit(X, Y_BINARY)
    curve = list(th_est.loss_curve_)
    coefs = [c.copy() for c in th_est.coefs_]
    sk_est = th_est.to_sklearn()
    sk_est.partial_fit(X, Y_BINARY)
    assert len(sk_est.loss_curve_) == len(curve) + 1
    assert th_est.loss_curve_ == curve
    for ours, before in zip(th_est.coefs_, coefs, strict=True):
        assert_array_equal(ours, before)


@QUIET
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"solver": "sgd"},
        {"solver": "sgd", "nesterovs_momentum": False},
        {"solver": "sgd", "learning_rate": "invscaling"},
    ],
    ids=["adam", "sgd-nesterov", "sgd", "sgd-invscaling"],
)
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_to_sklearn_continues_partial_fit_exactly(kind, params):
    # The optimizer's moments and step travel too: scikit-learn's next partial_fit
    # on the exported model is ours.
    X_, y_, _ = TARGETS["multiclass" if kind == "classifier" else "regression-1d"]
    _, th_est = exact_pair(kind, batch_size=16, **params)
    kwargs = {"classes": np.unique(y_)} if kind == "classifier" else {}
    th_est.partial_fit(X_, y_, **kwargs)
    th_est.partial_fit(X_, y_)
    sk_est = th_est.to_sklearn()
    th_est.partial_fit(X_, y_)
    sk_est.partial_fit(X_, y_)
    assert_same_weights(th_est, sk_est)
    assert th_est.t_ == sk_est.t_
    assert_allclose(th_est.loss_curve_, sk_est.loss_curve_, rtol=1e-9)


@QUIET
@pytest.mark.parametrize("early_stopping", [False, True])
def test_to_sklearn_continues_warm_start_fit_exactly(early_stopping):
    _, th_est = exact_pair(
        "classifier", warm_start=True, max_iter=5, early_stopping=early_stopping
    )
    th_est.fit(X, Y_BINARY)
    sk_est = th_est.to_sklearn()
    th_est.fit(X, Y_BINARY)
    sk_est.fit(X, Y_BINARY)
    assert_same_weights(th_est, sk_est)
    assert th_est.n_iter_ == sk_est.n_iter_
    assert len(th_est.loss_curve_) == len(sk_est.loss_curve_)


def test_from_sklearn():
    sk_est = sk.MLPRegressor(
        loss="poisson", hidden_layer_sizes=(7, 3), alpha=0.1, solver="sgd"
    )
    th_est = th.MLPRegressor.from_sklearn(sk_est, device="cpu", dtype="float64")
    assert isinstance(th_est, th.MLPRegressor)
    params = th_est.get_params()
    assert (params.pop("device"), params.pop("dtype")) == ("cpu", "float64")
    assert params == sk_est.get_params()
    with pytest.raises(AttributeError):
        th_est.coefs_  # noqa: B018


@QUIET
def test_from_fitted_sklearn_takes_parameters_only():
    sk_est, _ = make_pair("classifier", random_state=0)
    sk_est.fit(X, Y_MULTI)
    th_est = th.MLPClassifier.from_sklearn(sk_est, device="cpu")
    assert not hasattr(th_est, "coefs_")
    th_est.fit(X, Y_MULTI)
    assert fitted_attributes(th_est) == fitted_attributes(sk_est)


# -- clone, Pipeline -----------------------------------------------------------------
@QUIET
def test_clone_keeps_parameters_not_state():
    _, th_est = make_pair("classifier", alpha=0.01, dtype="float64")
    th_est.fit(X, Y_BINARY)
    copy = clone(th_est)
    assert copy.get_params() == th_est.get_params()
    assert not hasattr(copy, "coefs_")
    sk_copy = clone(make_pair("classifier", alpha=0.01)[0])
    assert set(copy.get_params()) == set(sk_copy.get_params()) | {"device", "dtype"}


@pytest.mark.slow
@QUIET
@pytest.mark.parametrize("target", ["multiclass", "regression-1d"])
def test_pipeline(target):
    X_, y_, kind = TARGETS[target]
    sk_est, th_est = make_pair(kind, max_iter=300, random_state=0)
    sk_pipe = make_pipeline(StandardScaler(), sk_est)
    th_pipe = make_pipeline(StandardScaler(), th_est)
    step = th_pipe.steps[-1][0]
    th_pipe.set_params(**{f"{step}__alpha": 1e-3})
    sk_pipe.set_params(**{f"{sk_pipe.steps[-1][0]}__alpha": 1e-3})
    assert th_pipe.get_params()[f"{step}__device"] == "cpu"
    sk_pipe.fit(X_, y_)
    th_pipe.fit(X_, y_)
    assert th_pipe.predict(X_).shape == sk_pipe.predict(X_).shape
    # Same model, other random streams: training scores agree statistically.
    assert th_pipe.score(X_, y_) == pytest.approx(sk_pipe.score(X_, y_), abs=0.1)


# -- warm_start ------------------------------------------------------------------
@QUIET
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_warm_start_continues_from_previous_weights(kind):
    # Momentum-free, full-batch SGD keeps no optimizer state, so two warm fits of
    # k epochs are one fit of 2k epochs, in scikit-learn and in torchhpo.
    X_, y_, _ = TARGETS["binary" if kind == "classifier" else "regression-1d"]
    params = dict(solver="sgd", momentum=0.0, max_iter=4, tol=0.0)
    sk_warm, th_warm = exact_pair(kind, warm_start=True, **params)
    params["max_iter"] = 8
    sk_long, th_long = exact_pair(kind, **params)
    for est in (sk_warm, th_warm):
        est.fit(X_, y_)
        est.fit(X_, y_)
    sk_long.fit(X_, y_)
    th_long.fit(X_, y_)
    assert_same_weights(sk_warm, sk_long)
    assert_same_weights(th_warm, th_long)
    for ours, theirs in ((th_warm, sk_warm), (th_long, sk_long)):
        assert ours.n_iter_ == theirs.n_iter_
        assert ours.t_ == theirs.t_
        assert len(ours.loss_curve_) == len(theirs.loss_curve_)
    assert_allclose(th_warm.loss_curve_, th_long.loss_curve_, rtol=1e-9)
    assert_allclose(sk_warm.loss_curve_, sk_long.loss_curve_, rtol=1e-9)


@QUIET
def test_warm_start_grows_loss_curve_as_scikit_learn():
    sk_est, th_est = make_pair("classifier", warm_start=True, max_iter=3)
    for _ in range(3):
        sk_est.fit(X, Y_MULTI)
        th_est.fit(X, Y_MULTI)
        assert len(th_est.loss_curve_) == len(sk_est.loss_curve_)
        assert th_est.n_iter_ == sk_est.n_iter_
        assert th_est.t_ == sk_est.t_


@QUIET
def test_without_warm_start_fit_starts_over():
    sk_est, th_est = make_pair("classifier", max_iter=3, random_state=0)
    for est in (sk_est, th_est):
        est.fit(X, Y_MULTI)
    th_first = [c.copy() for c in th_est.coefs_]
    for est in (sk_est, th_est):
        est.fit(X, Y_BINARY)
    assert len(th_est.loss_curve_) == len(sk_est.loss_curve_)
    assert_array_equal(th_est.classes_, sk_est.classes_)
    assert th_est.coefs_[-1].shape == sk_est.coefs_[-1].shape != th_first[-1].shape


# -- partial_fit -------------------------------------------------------------------
@QUIET
@pytest.mark.parametrize(
    ("target", "params"),
    [
        ("binary", {}),
        ("multiclass", {"solver": "sgd"}),
        ("multilabel", {}),
        ("regression-1d", {}),
        ("regression-2d", {"solver": "sgd"}),
    ],
)
def test_partial_fit_attributes_match_scikit_learn(target, params):
    X_, y_, kind = TARGETS[target]
    sk_est, th_est = make_pair(kind, **params)
    kwargs = {}
    if kind == "classifier":
        # Multilabel classes are the indicator's column indices.
        classes = np.arange(y_.shape[1]) if y_.ndim == 2 else np.unique(y_)
        kwargs = {"classes": classes}
    for call in range(3):
        sk_est.partial_fit(X_, y_, **kwargs)
        th_est.partial_fit(X_, y_, **kwargs)
        assert fitted_attributes(th_est) == fitted_attributes(sk_est)
        assert th_est.n_iter_ == sk_est.n_iter_ == 1
        assert th_est.t_ == sk_est.t_ == (call + 1) * len(X_)
        assert len(th_est.loss_curve_) == len(sk_est.loss_curve_) == call + 1
        assert th_est.best_loss_ == min(th_est.loss_curve_)
        assert th_est.validation_scores_ is sk_est.validation_scores_ is None
        assert th_est.best_validation_score_ is sk_est.best_validation_score_
        assert th_est.n_layers_ == sk_est.n_layers_
        assert th_est.n_outputs_ == sk_est.n_outputs_
        assert th_est.out_activation_ == sk_est.out_activation_
        assert [c.shape for c in th_est.coefs_] == [c.shape for c in sk_est.coefs_]
        assert [b.shape for b in th_est.intercepts_] == [
            b.shape for b in sk_est.intercepts_
        ]
        if kind == "classifier":
            assert_array_equal(th_est.classes_, sk_est.classes_)


@QUIET
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_partial_fit_continues_the_optimizer(solver):
    # Three partial_fit calls are one fit of three epochs only if the optimizer
    # state (Adam's moments and step, SGD's velocities) carries over.
    sk_pf, th_pf = exact_pair("classifier", solver=solver, batch_size=20)
    sk_fit, th_fit = exact_pair("classifier", solver=solver, batch_size=20, max_iter=3)
    classes = np.unique(Y_MULTI)
    for _ in range(3):
        sk_pf.partial_fit(X, Y_MULTI, classes=classes)
        th_pf.partial_fit(X, Y_MULTI, classes=classes)
    sk_fit.fit(X, Y_MULTI)
    th_fit.fit(X, Y_MULTI)
    assert_same_weights(sk_pf, sk_fit)
    assert_same_weights(th_pf, th_fit)
    assert_allclose(th_pf.loss_curve_, th_fit.loss_curve_, rtol=1e-9)
    assert th_pf.t_ == sk_pf.t_ == th_fit.t_ == sk_fit.t_


@QUIET
def test_partial_fit_after_fit_continues():
    # scikit-learn's partial_fit after fit continues fit's optimizer; from the same
    # state (handed over by to_sklearn) both take the same step.
    sk_est, th_est = exact_pair("regressor", max_iter=4)
    sk_est.fit(X_REG, Y_REG)
    th_est.fit(X_REG, Y_REG)
    handed = th_est.to_sklearn()
    for est in (sk_est, th_est, handed):
        est.partial_fit(X_REG, Y_REG)
    assert_same_weights(th_est, handed)
    assert th_est.n_iter_ == sk_est.n_iter_ == 1
    assert th_est.t_ == sk_est.t_
    assert len(th_est.loss_curve_) == len(sk_est.loss_curve_)


# -- fitted attributes -------------------------------------------------------------
@QUIET
@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize(
    "params",
    [{}, {"solver": "lbfgs"}, {"solver": "sgd", "early_stopping": True}],
    ids=["adam", "lbfgs", "sgd-early-stopping"],
)
def test_fitted_attributes_match_scikit_learn(target, params):
    X_, y_, kind = TARGETS[target]
    # Five epochs: too few for the stopping rule, so the curves' lengths agree.
    sk_est, th_est = make_pair(kind, max_iter=5, **params)
    sk_est.fit(X_, y_)
    th_est.fit(X_, y_)
    assert fitted_attributes(th_est) == fitted_attributes(sk_est)


@QUIET
@pytest.mark.parametrize("x_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_weights_and_predictions_in_the_input_dtype(x_dtype, dtype):
    sk_est, th_est = make_pair("classifier", dtype=dtype)
    Xd = X.astype(x_dtype)
    sk_est.fit(Xd, Y_MULTI)
    th_est.fit(Xd, Y_MULTI)
    assert [c.dtype for c in th_est.coefs_] == [c.dtype for c in sk_est.coefs_]
    assert [b.dtype for b in th_est.intercepts_] == [
        b.dtype for b in sk_est.intercepts_
    ]
    assert th_est.predict_proba(Xd).dtype == sk_est.predict_proba(Xd).dtype


# -- labels ------------------------------------------------------------------------
@pytest.mark.slow
@QUIET
@pytest.mark.parametrize("labels", [["cat", "dog"], ["cat", "dog", "fish"]])
def test_string_labels(labels):
    y = np.array(labels)[(Y_MULTI % len(labels))]
    sk_est, th_est = make_pair("classifier", max_iter=300, random_state=0)
    sk_est.fit(X, y)
    th_est.fit(X, y)
    assert_array_equal(th_est.classes_, sk_est.classes_)
    th_pred, sk_pred = th_est.predict(X), sk_est.predict(X)
    assert th_pred.dtype == sk_pred.dtype
    assert set(th_pred) <= set(labels)
    proba = th_est.predict_proba(X)
    assert proba.shape == sk_est.predict_proba(X).shape
    assert_array_equal(th_est.classes_[proba.argmax(axis=1)], th_pred)
    assert th_est.score(X, y) == pytest.approx(sk_est.score(X, y), abs=0.15)


@QUIET
def test_string_labels_in_partial_fit():
    y = np.array(["a", "b", "c"])[Y_MULTI]
    sk_est, th_est = make_pair("classifier")
    for est in (sk_est, th_est):
        est.partial_fit(X[:30], y[:30], classes=["a", "b", "c"])
        est.partial_fit(X[30:], y[30:])
    assert_array_equal(th_est.classes_, sk_est.classes_)
    assert th_est.predict(X).dtype == sk_est.predict(X).dtype


# -- warnings and verbose output -------------------------------------------------------
def _warnings_of(fit) -> list[tuple[type, str]]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fit()
    return [(w.category, str(w.message)) for w in record]


@pytest.mark.parametrize(
    "params",
    [{"solver": "adam"}, {"solver": "sgd"}, {"solver": "lbfgs"}],
    ids=["adam", "sgd", "lbfgs"],
)
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_convergence_warning_when_max_iter_is_hit(kind, params):
    X_, y_, _ = TARGETS["multiclass" if kind == "classifier" else "regression-1d"]
    sk_est, th_est = make_pair(kind, max_iter=2, tol=0.0, **params)
    sk_warnings = _warnings_of(lambda: sk_est.fit(X_, y_))
    th_warnings = _warnings_of(lambda: th_est.fit(X_, y_))
    assert [c for c, _ in sk_warnings] == [ConvergenceWarning]
    assert th_warnings == sk_warnings
    assert th_est.n_iter_ == sk_est.n_iter_ == 2


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_no_convergence_warning_when_converged(solver):
    sk_est, th_est = make_pair("classifier", solver=solver, tol=1e3, max_iter=50)
    sk_warnings = _warnings_of(lambda: sk_est.fit(X, Y_BINARY))
    th_warnings = _warnings_of(lambda: th_est.fit(X, Y_BINARY))
    assert th_warnings == sk_warnings == []
    assert th_est.n_iter_ == sk_est.n_iter_


def test_partial_fit_never_warns_about_max_iter():
    sk_est, th_est = make_pair("classifier", max_iter=1)
    classes = np.unique(Y_BINARY)
    sk_warnings = _warnings_of(lambda: sk_est.partial_fit(X, Y_BINARY, classes=classes))
    th_warnings = _warnings_of(lambda: th_est.partial_fit(X, Y_BINARY, classes=classes))
    assert th_warnings == sk_warnings == []


def _verbose_shape(text: str) -> list[str]:
    """Verbose lines with their numbers masked (the random streams differ)."""
    return [re.sub(r"= -?[\d.]+(e[-+]\d+)?$|: [\d.]+$", "#", line) for line in text]


@QUIET
@pytest.mark.parametrize(
    "params",
    [
        # Each stops at an epoch fixed by the rule, not by the random streams: no
        # log-loss improves by tol=1.0 (or 10.0) in an epoch.
        {"max_iter": 4},
        {"max_iter": 30, "n_iter_no_change": 2, "tol": 1.0},
        {"max_iter": 30, "n_iter_no_change": 2, "tol": 1.0, "early_stopping": True},
        {
            "solver": "sgd",
            "learning_rate": "adaptive",
            "max_iter": 30,
            "n_iter_no_change": 1,
            "tol": 10.0,
        },
    ],
    ids=["max_iter", "converged", "early_stopping", "adaptive"],
)
def test_verbose_output(capsys, params):
    sk_est, th_est = make_pair("classifier", verbose=True, random_state=0, **params)
    sk_est.fit(X, Y_BINARY)
    sk_out = capsys.readouterr().out.splitlines()
    th_est.fit(X, Y_BINARY)
    th_out = capsys.readouterr().out.splitlines()
    assert th_out[0].startswith("Iteration 1, loss = ")
    assert _verbose_shape(th_out) == _verbose_shape(sk_out)
    losses = [float(line.split("= ")[1]) for line in th_out if "loss =" in line]
    assert_allclose(losses, th_est.loss_curve_, rtol=1e-7)


def test_verbose_partial_fit(capsys):
    sk_est, th_est = make_pair("regressor", verbose=True)
    for _ in range(2):
        sk_est.partial_fit(X_REG, Y_REG)
    sk_out = capsys.readouterr().out.splitlines()
    for _ in range(2):
        th_est.partial_fit(X_REG, Y_REG)
    th_out = capsys.readouterr().out.splitlines()
    assert _verbose_shape(th_out) == _verbose_shape(sk_out)
    assert len(th_out) == 2


# -- feature names ------------------------------------------------------------------
@QUIET
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_feature_names_from_a_dataframe(kind):
    pd = pytest.importorskip("pandas")
    X_, y_, _ = TARGETS["binary" if kind == "classifier" else "regression-1d"]
    frame = pd.DataFrame(X_, columns=[f"f{i}" for i in range(X_.shape[1])])
    sk_est, th_est = make_pair(kind)
    sk_est.fit(frame, y_)
    th_est.fit(frame, y_)
    assert_array_equal(th_est.feature_names_in_, sk_est.feature_names_in_)
    assert th_est.n_features_in_ == sk_est.n_features_in_
    assert_array_equal(th_est.to_sklearn().feature_names_in_, sk_est.feature_names_in_)

    # Reordered columns: scikit-learn's error.
    reordered = frame[frame.columns[::-1]]
    with pytest.raises(ValueError) as sk_info:
        sk_est.predict(reordered)
    with pytest.raises(ValueError) as th_info:
        th_est.predict(reordered)
    assert str(th_info.value) == str(sk_info.value)

    # A bare array after fitting on a frame: scikit-learn's warning.
    sk_warnings = _warnings_of(lambda: sk_est.predict(X_))
    th_warnings = _warnings_of(lambda: th_est.predict(X_))
    assert th_warnings == sk_warnings != []

    # Fitted on an array: no feature names, in both.
    sk_est.fit(X_, y_)
    th_est.fit(X_, y_)
    assert not hasattr(th_est, "feature_names_in_")
    assert not hasattr(sk_est, "feature_names_in_")
