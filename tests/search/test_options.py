"""Every search validates its options by declaration, through one shared mixin."""

from __future__ import annotations

import inspect
import warnings

import pytest
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_param_validation

from torchhpo import (
    GridSearchCV,
    HalvingGridSearchCV,
    HalvingRandomSearchCV,
    MLPClassifier,
    RandomizedSearchCV,
)
from torchhpo.search._options import TORCHHPO_OPTIONS, SearchOptions

optuna = pytest.importorskip("optuna")

from torchhpo import OptunaSearchCV  # noqa: E402

SEARCHES = [
    GridSearchCV,
    RandomizedSearchCV,
    HalvingGridSearchCV,
    HalvingRandomSearchCV,
    OptunaSearchCV,
]
ALPHA = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)


def _optuna(**kwargs):
    options = {"n_trials": 1, "cv": 2, "progress": False, **kwargs}
    return OptunaSearchCV(
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0),
        {"alpha": ALPHA},
        **options,
    )


@pytest.mark.parametrize("search", SEARCHES, ids=lambda c: c.__name__)
def test_every_search_declares_each_parameter_and_the_shared_options(search):
    assert issubclass(search, SearchOptions)
    constraints = search._parameter_constraints
    init = set(inspect.signature(search.__init__).parameters) - {"self"}
    assert set(constraints) == init
    for name, constraint in TORCHHPO_OPTIONS.items():
        assert constraints[name] is constraint


def test_optuna_search_passes_scikit_learns_parameter_validation_check():
    """scikit-learn's own check: each invalid type or value raises at fit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_param_validation("OptunaSearchCV", _optuna())


@pytest.mark.parametrize(
    "option, value",
    [
        ("max_iter", 0),
        ("trials_per_batch", 0),
        ("n_trials", -1),
        ("timeout", -1),
        ("subsample", 0.0),
        ("scoring", "acuracy"),
        ("param_names", ["alpha"]),
    ],
)
def test_bad_optuna_options_raise_scikit_learns_error(digits, option, value):
    X, y = digits
    with pytest.raises(InvalidParameterError, match=f"'{option}' parameter") as info:
        _optuna(**{option: value}).fit(X, y)
    assert isinstance(info.value, ValueError)
    assert repr(value) in str(info.value) or str(value) in str(info.value)


@pytest.mark.parametrize(
    "option, value",
    [("max_pack_size", 0), ("backend", "gpu"), ("dtype", "float16"), ("progress", 2)],
)
def test_shared_options_fail_as_in_the_scikit_learn_derived_searches(
    digits, option, value
):
    X, y = digits
    mlp = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2)
    with pytest.raises(InvalidParameterError) as grid:
        GridSearchCV(mlp, {"alpha": [1e-4]}, **{option: value}).fit(X, y)
    with pytest.raises(InvalidParameterError) as opt:
        _optuna(**{option: value}).fit(X, y)
    assert str(opt.value) == str(grid.value).replace("GridSearchCV", "OptunaSearchCV")


def test_estimator_without_fit_is_named(digits):
    X, y = digits
    with pytest.raises(InvalidParameterError, match="'estimator' parameter"):
        OptunaSearchCV(object(), {"alpha": ALPHA}).fit(X, y)


def test_an_unusable_device_is_refused_before_training(digits):
    X, y = digits
    with pytest.raises(ValueError, match="'device' parameter"):
        _optuna(device="tpu").fit(X, y)
    with pytest.raises(ValueError, match="at least one device"):
        _optuna(device=[]).fit(X, y)
