"""Bad input: torchhpo's MLPs fail as scikit-learn's do, side by side.

Each test gives the same call to a scikit-learn MLP and to torchhpo's, and asserts
the same exception type and message; where scikit-learn accepts an edge case, both
must succeed and agree.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn import neural_network as sk
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

import torchhpo as th

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

KINDS = ["classifier", "regressor"]
FAST = {"max_iter": 5}

rng = np.random.RandomState(0)
X = rng.uniform(size=(20, 3))
Y_CLASS = (X[:, 0] > 0.5).astype(int)
Y_REG = X @ np.array([1.0, -2.0, 0.5])


#: scikit-learn's error for weights that are not finite (its _multilayer_perceptron).
NON_FINITE = (
    "Solver produced non-finite parameter weights. The input data may contain large "
    "values and need to be preprocessed."
)


def _y(kind: str) -> np.ndarray:
    return Y_CLASS if kind == "classifier" else Y_REG


def make_pair(kind: str, **params):
    """Return a scikit-learn MLP and a torchhpo MLP with the same parameters."""
    params = {**FAST, **params}
    if kind == "classifier":
        return sk.MLPClassifier(**params), th.MLPClassifier(**params, device="cpu")
    return sk.MLPRegressor(**params), th.MLPRegressor(**params, device="cpu")


def assert_same_error(action, sk_est, th_est) -> BaseException:
    """Run ``action`` on both estimators; assert equal exception types and messages.

    Returns
    -------
    BaseException
        torchhpo's exception.
    """
    with pytest.raises(Exception) as sk_info:
        action(sk_est)
    with pytest.raises(Exception) as th_info:
        action(th_est)
    assert type(th_info.value) is type(sk_info.value), (th_info.value, sk_info.value)
    assert str(th_info.value) == str(sk_info.value)
    return th_info.value


def assert_same_fit_error(kind: str, X_, y_, **fit_params) -> None:
    """``fit`` fails identically on both, and leaves neither fitted."""
    sk_est, th_est = make_pair(kind)
    assert_same_error(lambda est: est.fit(X_, y_, **fit_params), sk_est, th_est)
    assert not hasattr(sk_est, "coefs_")
    assert not hasattr(th_est, "coefs_")


# -- invalid parameters --------------------------------------------------------
INVALID_PARAMS = [
    ("activation", "foo"),
    ("alpha", -1),
    ("max_iter", 0),
    ("batch_size", 0),
    ("batch_size", 1.5),
    ("learning_rate_init", 0),
    ("momentum", 2),
    ("validation_fraction", 1),
    ("n_iter_no_change", 0),
    ("solver", "foo"),
    ("learning_rate", "foo"),
    ("beta_1", 1),
    ("beta_2", -0.1),
    ("epsilon", 0),
    ("max_fun", 0),
    ("tol", -1),
    ("power_t", -1),
    ("shuffle", "yes"),
    ("hidden_layer_sizes", "abc"),
    ("hidden_layer_sizes", 0),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("param", "value"), INVALID_PARAMS)
def test_invalid_parameter(kind, param, value):
    sk_est, th_est = make_pair(kind, **{param: value})
    error = assert_same_error(lambda est: est.fit(X, _y(kind)), sk_est, th_est)
    assert isinstance(error, InvalidParameterError)
    assert f"The '{param}' parameter" in str(error)


@pytest.mark.parametrize("kind", KINDS)
def test_invalid_parameter_in_partial_fit(kind):
    sk_est, th_est = make_pair(kind, alpha=-1)
    kwargs = {"classes": [0, 1]} if kind == "classifier" else {}
    error = assert_same_error(
        lambda est: est.partial_fit(X, _y(kind), **kwargs), sk_est, th_est
    )
    assert isinstance(error, InvalidParameterError)


def test_invalid_regressor_loss():
    sk_est, th_est = make_pair("regressor", loss="foo")
    error = assert_same_error(lambda est: est.fit(X, Y_REG), sk_est, th_est)
    assert "The 'loss' parameter" in str(error)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sizes", [(0,), (10, -1), [3, 0]])
def test_hidden_layer_sizes_below_one(kind, sizes):
    sk_est, th_est = make_pair(kind, hidden_layer_sizes=sizes)
    error = assert_same_error(lambda est: est.fit(X, _y(kind)), sk_est, th_est)
    assert isinstance(error, ValueError)
    assert "hidden_layer_sizes must be > 0" in str(error)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sizes", [(3.5,), (10.0,), (np.float64(4),), (True,)])
def test_hidden_layer_sizes_not_integers(kind, sizes):
    sk_est, th_est = make_pair(kind, hidden_layer_sizes=sizes)
    error = assert_same_error(lambda est: est.fit(X, _y(kind)), sk_est, th_est)
    assert isinstance(error, TypeError)


def test_data_errors_come_before_hidden_size_type_errors():
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    sk_est, th_est = make_pair("classifier", hidden_layer_sizes=(3.5,))
    error = assert_same_error(lambda est: est.fit(X_nan, Y_CLASS), sk_est, th_est)
    assert isinstance(error, ValueError)


# -- non-finite values ---------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_X_in_fit(kind, bad):
    X_bad = X.copy()
    X_bad[3, 1] = bad
    assert_same_fit_error(kind, X_bad, _y(kind))


@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_X_in_partial_fit(kind):
    X_bad = X.copy()
    X_bad[0, 0] = np.nan
    sk_est, th_est = make_pair(kind)
    kwargs = {"classes": [0, 1]} if kind == "classifier" else {}
    assert_same_error(
        lambda est: est.partial_fit(X_bad, _y(kind), **kwargs), sk_est, th_est
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["predict", "predict_proba", "score"])
def test_non_finite_X_in_prediction(kind, method):
    sk_est, th_est = make_pair(kind)
    if not hasattr(sk_est, method):
        pytest.skip(f"scikit-learn's {kind} has no {method}")
    sk_est.fit(X, _y(kind))
    th_est.fit(X, _y(kind))
    X_bad = X.copy()
    X_bad[1, 2] = np.inf
    args = (X_bad, _y(kind)) if method == "score" else (X_bad,)
    assert_same_error(lambda est: getattr(est, method)(*args), sk_est, th_est)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_y_regressor(bad):
    y_bad = Y_REG.copy()
    y_bad[5] = bad
    assert_same_fit_error("regressor", X, y_bad)


def test_nan_y_classifier():
    y_bad = Y_CLASS.astype(float)
    y_bad[5] = np.nan
    assert_same_fit_error("classifier", X, y_bad)


@pytest.mark.parametrize("kind", KINDS)
def test_nan_sample_weight(kind):
    sample_weight = np.ones(len(X))
    sample_weight[2] = np.nan
    assert_same_fit_error(kind, X, _y(kind), sample_weight=sample_weight)


@pytest.mark.parametrize("kind", KINDS)
def test_complex_X(kind):
    assert_same_fit_error(kind, X + 1j, _y(kind))


# -- values float32 training cannot hold -----------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_values_overflowing_float32_are_refused(kind):
    # scikit-learn trains such data in float64 and, where its weights overflow,
    # raises its non-finite-weights error (test_mlp.py::test_nonfinite_params): the
    # float32 default raises that error, naming the input and float64 as the way out.
    X_big = X * 1e39
    _, th_est = make_pair(kind)
    with pytest.raises(ValueError, match=re.escape(NON_FINITE)) as got:
        th_est.fit(X_big, _y(kind))
    assert "Input X" in str(got.value) and "dtype='float64'" in str(got.value)
    assert not hasattr(th_est, "coefs_")


@pytest.mark.parametrize("name", ["y", "sample_weight"])
def test_targets_and_weights_overflowing_float32_are_refused(name):
    big = {"y": Y_REG, "sample_weight": np.ones(len(X))}
    big[name] = big[name] * 1e300
    _, th_est = make_pair("regressor")
    with pytest.raises(ValueError, match=re.escape(NON_FINITE)) as got:
        th_est.fit(X, **big)
    assert f"Input {name}" in str(got.value)
    assert "dtype='float64'" in str(got.value)


def test_scikit_learns_nonfinite_params_case_in_either_dtype():
    # test_mlp.py::test_nonfinite_params's data: float64's largest values.
    rng = np.random.RandomState(0)
    X_max = np.finfo(np.float64).max * rng.uniform(size=(10, 2))
    y = rng.standard_normal(size=10)
    with pytest.raises(ValueError) as expected, np.errstate(all="ignore"):
        sk.MLPRegressor().fit(X_max, y)
    for dtype in ("float32", "float64"):
        with pytest.raises(ValueError) as got, np.errstate(all="ignore"):
            th.MLPRegressor(dtype=dtype, device="cpu").fit(X_max, y)
        assert str(got.value).startswith(str(expected.value))


def test_alpha_beyond_float32_names_float64():
    sk_est, th_est = make_pair("classifier", alpha=1e300)
    sk_est.fit(X, Y_CLASS)  # finite in float64
    with pytest.raises(ValueError, match=r"alpha=1e\+300 .*dtype='float64'"):
        th_est.fit(X, Y_CLASS)
    th_est.set_params(dtype="float64").fit(X, Y_CLASS)
    assert th_est.n_iter_ == sk_est.n_iter_


@pytest.mark.parametrize("kind", KINDS)
def test_an_oversized_layer_raises_memory_error(kind):
    # ~10**12 weights per input: neither NumPy nor torch can allocate them.
    for est in make_pair(kind, hidden_layer_sizes=(10**12,), max_iter=1):
        with pytest.raises(MemoryError):
            est.fit(X, _y(kind))


@pytest.mark.parametrize("kind", KINDS)
def test_float64_training_takes_what_scikit_learn_takes(kind):
    X_big = X * 1e39
    sk_est, _ = make_pair(kind)
    sk_est.fit(X_big, _y(kind))
    th_est = make_pair(kind)[1].set_params(dtype="float64")
    th_est.fit(X_big, _y(kind))
    assert th_est.n_iter_ == sk_est.n_iter_


# -- shapes and sizes ----------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_one_dimensional_X(kind):
    assert_same_fit_error(kind, X[:, 0], _y(kind))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_predict_one_dimensional_X(kind, method):
    sk_est, th_est = make_pair(kind)
    if not hasattr(sk_est, method):
        pytest.skip(f"scikit-learn's {kind} has no {method}")
    sk_est.fit(X, _y(kind))
    th_est.fit(X, _y(kind))
    error = assert_same_error(lambda est: getattr(est, method)(X[0]), sk_est, th_est)
    assert "Reshape your data" in str(error)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["predict", "predict_proba", "score"])
def test_predict_with_other_feature_count(kind, method):
    sk_est, th_est = make_pair(kind)
    if not hasattr(sk_est, method):
        pytest.skip(f"scikit-learn's {kind} has no {method}")
    sk_est.fit(X, _y(kind))
    th_est.fit(X, _y(kind))
    args = (X[:, :2], _y(kind)) if method == "score" else (X[:, :2],)
    error = assert_same_error(lambda est: getattr(est, method)(*args), sk_est, th_est)
    assert "features" in str(error)


@pytest.mark.parametrize("kind", KINDS)
def test_partial_fit_with_other_feature_count(kind):
    sk_est, th_est = make_pair(kind)
    kwargs = {"classes": [0, 1]} if kind == "classifier" else {}
    for est in (sk_est, th_est):
        est.partial_fit(X, _y(kind), **kwargs)
    assert_same_error(lambda est: est.partial_fit(X[:, :2], _y(kind)), sk_est, th_est)


@pytest.mark.parametrize("kind", KINDS)
def test_warm_start_with_other_feature_count(kind):
    sk_est, th_est = make_pair(kind, warm_start=True)
    for est in (sk_est, th_est):
        est.fit(X, _y(kind))
    assert_same_error(lambda est: est.fit(X[:, :2], _y(kind)), sk_est, th_est)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_data(kind):
    assert_same_fit_error(kind, np.empty((0, 3)), np.empty(0))


@pytest.mark.parametrize("kind", KINDS)
def test_no_features(kind):
    assert_same_fit_error(kind, np.empty((20, 0)), _y(kind))


@pytest.mark.parametrize("kind", KINDS)
def test_predict_on_empty_data(kind):
    sk_est, th_est = make_pair(kind)
    sk_est.fit(X, _y(kind))
    th_est.fit(X, _y(kind))
    assert_same_error(lambda est: est.predict(np.empty((0, 3))), sk_est, th_est)


@pytest.mark.parametrize("kind", KINDS)
def test_mismatched_X_y_lengths(kind):
    assert_same_fit_error(kind, X, _y(kind)[:-1])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "sample_weight", [np.ones(5), np.ones((20, 2)), "abc"], ids=["short", "2d", "str"]
)
def test_bad_sample_weight(kind, sample_weight):
    assert_same_fit_error(kind, X, _y(kind), sample_weight=sample_weight)


@pytest.mark.parametrize("kind", KINDS)
def test_y_none(kind):
    assert_same_fit_error(kind, X, None)


def test_continuous_y_for_classifier():
    assert_same_fit_error("classifier", X, Y_REG)


def test_multiclass_multioutput_y_for_classifier():
    y = np.c_[Y_CLASS, (X[:, 1] * 3).astype(int)]
    assert_same_fit_error("classifier", X, y)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_unfitted(kind, method):
    sk_est, th_est = make_pair(kind)
    if not hasattr(sk_est, method):
        pytest.skip(f"scikit-learn's {kind} has no {method}")
    error = assert_same_error(lambda est: getattr(est, method)(X), sk_est, th_est)
    assert isinstance(error, NotFittedError)


def test_to_sklearn_unfitted():
    _, th_est = make_pair("classifier")
    with pytest.raises(NotFittedError):
        th_est.to_sklearn()


# -- partial_fit and warm_start ------------------------------------------------
def test_partial_fit_on_lbfgs_classifier():
    sk_est, th_est = make_pair("classifier", solver="lbfgs")
    assert not hasattr(sk_est, "partial_fit")
    assert not hasattr(th_est, "partial_fit")
    error = assert_same_error(
        lambda est: est.partial_fit(X, Y_CLASS, classes=[0, 1]), sk_est, th_est
    )
    assert isinstance(error, AttributeError)


def test_partial_fit_on_lbfgs_regressor_is_accepted():
    # scikit-learn's MLPRegressor offers partial_fit for every solver; with lbfgs
    # a call runs a full lbfgs fit.
    sk_est, th_est = make_pair("regressor", solver="lbfgs")
    assert hasattr(sk_est, "partial_fit") and hasattr(th_est, "partial_fit")
    for _ in range(2):
        sk_est.partial_fit(X, Y_REG)
        th_est.partial_fit(X, Y_REG)
    assert th_est.n_iter_ == sk_est.n_iter_
    assert th_est.t_ == sk_est.t_
    assert hasattr(th_est, "loss_curve_") == hasattr(sk_est, "loss_curve_")


def test_partial_fit_first_call_without_classes():
    sk_est, th_est = make_pair("classifier")
    error = assert_same_error(lambda est: est.partial_fit(X, Y_CLASS), sk_est, th_est)
    assert "classes must be passed on the first call" in str(error)


def test_partial_fit_with_changed_classes():
    sk_est, th_est = make_pair("classifier")
    for est in (sk_est, th_est):
        est.partial_fit(X, Y_CLASS, classes=[0, 1])
    assert_same_error(
        lambda est: est.partial_fit(X, Y_CLASS, classes=[0, 2]), sk_est, th_est
    )


def test_partial_fit_unknown_class():
    sk_est, th_est = make_pair("classifier")
    for est in (sk_est, th_est):
        est.partial_fit(X, Y_CLASS, classes=[0, 1])
    error = assert_same_error(
        lambda est: est.partial_fit(X, Y_CLASS + 1), sk_est, th_est
    )
    assert "`y` has classes not in `self.classes_`" in str(error)


def test_partial_fit_multilabel_with_label_values_as_classes():
    # Multilabel classes are the indicator's column indices, not its values.
    y = np.c_[Y_CLASS, 1 - Y_CLASS, Y_CLASS]
    sk_est, th_est = make_pair("classifier")
    assert_same_error(lambda est: est.partial_fit(X, y, classes=[0, 1]), sk_est, th_est)


@pytest.mark.parametrize("kind", KINDS)
def test_partial_fit_with_early_stopping(kind):
    sk_est, th_est = make_pair(kind, early_stopping=True)
    kwargs = {"classes": [0, 1]} if kind == "classifier" else {}
    error = assert_same_error(
        lambda est: est.partial_fit(X, _y(kind), **kwargs), sk_est, th_est
    )
    assert "partial_fit does not support early_stopping=True" in str(error)


def test_warm_start_with_new_classes():
    sk_est, th_est = make_pair("classifier", warm_start=True)
    for est in (sk_est, th_est):
        est.fit(X, Y_CLASS)
    y_new = np.where(Y_CLASS == 1, 2, 0)
    error = assert_same_error(lambda est: est.fit(X, y_new), sk_est, th_est)
    assert "warm_start can only be used where `y` has the same classes" in str(error)


def test_warm_start_with_fewer_classes():
    sk_est, th_est = make_pair("classifier", warm_start=True)
    for est in (sk_est, th_est):
        est.fit(X, Y_CLASS)
    keep = Y_CLASS == 0
    assert_same_error(lambda est: est.fit(X[keep], Y_CLASS[keep]), sk_est, th_est)


@pytest.mark.parametrize("kind", KINDS)
def test_early_stopping_validation_set_too_small(kind):
    sk_est, th_est = make_pair(kind, early_stopping=True, validation_fraction=0.01)
    error = assert_same_error(lambda est: est.fit(X, _y(kind)), sk_est, th_est)
    # The classifier's stratified split objects first, in scikit-learn's words.
    if kind == "regressor":
        assert "The validation set is too small" in str(error)


def test_early_stopping_with_a_single_member_class_is_accepted():
    y = Y_CLASS.copy()
    y[0] = 2
    sk_est, th_est = make_pair("classifier", early_stopping=True)
    sk_est.fit(X, y)
    th_est.fit(X, y)
    np.testing.assert_array_equal(th_est.classes_, sk_est.classes_)
    assert len(th_est.validation_scores_) == len(sk_est.validation_scores_)


@pytest.mark.parametrize("kind", KINDS)
def test_batch_size_larger_than_data_warns(kind):
    sk_est, th_est = make_pair(kind, batch_size=1000)
    with pytest.warns(UserWarning) as sk_record:
        sk_est.fit(X, _y(kind))
    with pytest.warns(UserWarning) as th_record:
        th_est.fit(X, _y(kind))

    def clipped(record):
        return [str(w.message) for w in record if "clipped" in str(w.message)]

    assert clipped(th_record) == clipped(sk_record) != []
    assert th_est.n_iter_ == sk_est.n_iter_


# -- edge cases scikit-learn accepts ----------------------------------------------
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_single_class_is_accepted(solver):
    y = np.full(len(X), 7)
    sk_est, th_est = make_pair("classifier", solver=solver)
    sk_est.fit(X, y)
    th_est.fit(X, y)
    np.testing.assert_array_equal(th_est.classes_, sk_est.classes_)
    np.testing.assert_array_equal(th_est.predict(X), sk_est.predict(X))
    assert th_est.predict_proba(X).shape == sk_est.predict_proba(X).shape
    assert th_est.n_outputs_ == sk_est.n_outputs_
    assert th_est.out_activation_ == sk_est.out_activation_


def test_single_class_with_string_label():
    y = np.array(["spam"] * len(X))
    sk_est, th_est = make_pair("classifier")
    sk_est.fit(X, y)
    th_est.fit(X, y)
    np.testing.assert_array_equal(th_est.predict(X), sk_est.predict(X))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_one_sample_is_accepted(kind, solver):
    sk_est, th_est = make_pair(kind, solver=solver)
    sk_est.fit(X[:1], _y(kind)[:1])
    th_est.fit(X[:1], _y(kind)[:1])
    sk_pred, th_pred = sk_est.predict(X), th_est.predict(X)
    assert th_pred.shape == sk_pred.shape
    if solver == "adam":  # lbfgs's iteration count depends on the initial weights
        assert th_est.n_iter_ == sk_est.n_iter_
    if kind == "classifier":
        np.testing.assert_array_equal(th_est.classes_, sk_est.classes_)
        np.testing.assert_array_equal(th_pred, sk_pred)


@pytest.mark.parametrize("kind", KINDS)
def test_one_sample_with_early_stopping(kind):
    sk_est, th_est = make_pair(kind, early_stopping=True)
    assert_same_error(lambda est: est.fit(X[:1], _y(kind)[:1]), sk_est, th_est)


@pytest.mark.parametrize("kind", KINDS)
def test_all_zero_sample_weights(kind):
    assert_same_fit_error(kind, X, _y(kind), sample_weight=np.zeros(len(X)))


@pytest.mark.parametrize("kind", KINDS)
def test_some_zero_sample_weights_are_accepted(kind):
    sample_weight = np.ones(len(X))
    sample_weight[:5] = 0
    sk_est, th_est = make_pair(kind)
    sk_est.fit(X, _y(kind), sample_weight=sample_weight)
    th_est.fit(X, _y(kind), sample_weight=sample_weight)
    assert th_est.n_iter_ == sk_est.n_iter_
    assert th_est.t_ == sk_est.t_


@pytest.mark.parametrize("kind", KINDS)
def test_sparse_and_integer_inputs_are_accepted(kind):
    sk_est, th_est = make_pair(kind)
    for X_ in (sp.csr_matrix(X), sp.coo_matrix(X), (X * 10).astype(int)):
        sk_est.fit(X_, _y(kind))
        th_est.fit(X_, _y(kind))
        assert th_est.predict(X_).shape == sk_est.predict(X_).shape


# -- torchhpo's own options --------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("device", ["foo", "gpu", "cuda:x"])
def test_bad_device_string(kind, device):
    _, th_est = make_pair(kind)
    th_est.set_params(device=device)  # accepted until fit, as scikit-learn's params
    with pytest.raises(ValueError, match="'device'"):
        th_est.fit(X, _y(kind))
    assert not hasattr(th_est, "coefs_")


@pytest.mark.parametrize("kind", KINDS)
def test_device_of_wrong_type(kind):
    # The same error type scikit-learn gives its own parameters of a wrong type.
    sk_est, th_est = make_pair(kind, activation=3)
    with pytest.raises(InvalidParameterError) as sk_info:
        sk_est.fit(X, _y(kind))
    th_est.set_params(activation="relu", device=3)
    with pytest.raises(type(sk_info.value), match="The 'device' parameter"):
        th_est.fit(X, _y(kind))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda():
    _, th_est = make_pair("classifier")
    th_est.set_params(device="cuda")
    with pytest.raises(ValueError, match=r"'device'.*CUDA is not available"):
        th_est.fit(X, Y_CLASS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["float16", "int32", 32])
def test_bad_dtype_option(kind, dtype):
    _, th_est = make_pair(kind)
    th_est.set_params(dtype=dtype)
    with pytest.raises(InvalidParameterError, match="The 'dtype' parameter"):
        th_est.fit(X, _y(kind))


@pytest.mark.parametrize("dtype", [torch.float16, torch.int32, torch.bfloat16])
def test_unsupported_torch_dtype(dtype):
    _, th_est = make_pair("classifier")
    th_est.set_params(dtype=dtype)
    with pytest.raises(ValueError, match="'dtype'"):
        th_est.fit(X, Y_CLASS)
    assert not hasattr(th_est, "coefs_")


def test_from_sklearn_refuses_the_other_kind():
    with pytest.raises(TypeError, match="MLPRegressor"):
        th.MLPRegressor.from_sklearn(sk.MLPClassifier())
    with pytest.raises(TypeError, match="MLPClassifier"):
        th.MLPClassifier.from_sklearn(sk.MLPRegressor())
