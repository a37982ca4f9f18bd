"""The engine's core invariant: a model's result does not depend on its pack.

In float64, a model trained inside a pack of heterogeneous models (activations,
solvers, Nesterov on/off, schedules, alphas, early stopping, folds of different
lengths, so different step counts per epoch and different stopping epochs) ends
with the weights, loss curve, counters and optimizer state it gets when trained
alone; and neither the order of the models nor the pack size changes anything.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import (
    make_classification,
    make_multilabel_classification,
    make_regression,
)
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler

from torchhpo.engine import (
    DeviceData,
    Hyperparams,
    ModelState,
    ModelTask,
    plan_packs,
    train_models,
)

WEIGHT_ATOL = 1e-8
CURVE_ATOL = 1e-10
CURVE_RTOL = 1e-12  # a diverging model's huge losses agree relatively

# Every hidden activation, both solvers, Nesterov on/off, every schedule, several
# alphas and stopping rules, early stopping on some: one pack of 12 models.
CONFIGS = [
    dict(activation="relu", solver="adam", learning_rate_init=1e-2),
    dict(activation="tanh", solver="sgd", learning_rate_init=0.05),
    dict(
        activation="logistic",
        solver="sgd",
        nesterovs_momentum=False,
        learning_rate="invscaling",
        learning_rate_init=0.5,
    ),
    dict(activation="identity", solver="adam", alpha=1e-2, early_stopping=True),
    dict(
        activation="relu",
        solver="sgd",
        learning_rate="adaptive",
        learning_rate_init=0.1,
        tol=1e-3,
        n_iter_no_change=2,
    ),
    dict(
        activation="tanh",
        solver="adam",
        alpha=1e-3,
        early_stopping=True,
        n_iter_no_change=3,
        learning_rate_init=5e-3,
    ),
    dict(activation="logistic", solver="adam", beta_1=0.8, beta_2=0.99, epsilon=1e-6),
    dict(
        activation="relu",
        solver="sgd",
        momentum=0.5,
        nesterovs_momentum=False,
        early_stopping=True,
        learning_rate="adaptive",
        learning_rate_init=0.2,
        tol=1e-2,
        n_iter_no_change=2,
    ),
    dict(
        activation="identity",
        solver="sgd",
        learning_rate="invscaling",
        power_t=0.3,
        learning_rate_init=0.05,
    ),
    dict(activation="tanh", solver="adam", shuffle=False, alpha=0.1),
    dict(activation="relu", solver="adam", tol=1e-2, n_iter_no_change=1, alpha=0.0),
    dict(
        activation="logistic",
        solver="sgd",
        learning_rate="adaptive",
        learning_rate_init=0.3,
        tol=0.05,
        n_iter_no_change=1,
        max_iter=12,
    ),
]


def _dataset(kind: str):
    rng = np.random.RandomState(0)
    if kind == "poisson":
        X, _ = make_regression(360, 8, random_state=1)
        X = StandardScaler().fit_transform(X)
        rate = np.exp(0.3 * X[:, :2] - 0.2 * X[:, 2:4])
        return X, rng.poisson(rate).astype(float), None
    if kind == "multilabel":
        X, Y = make_multilabel_classification(
            360, 8, n_classes=3, n_labels=2, random_state=0
        )
        return StandardScaler().fit_transform(X), Y.astype(float), None
    if kind == "regression":
        X, y = make_regression(360, 8, n_targets=2, noise=5.0, random_state=0)
        Y = StandardScaler().fit_transform(y)
        sw = rng.uniform(0.5, 2.0, size=len(X))
        return StandardScaler().fit_transform(X), Y, sw
    n_classes = 2 if kind == "binary" else 3
    X, y = make_classification(
        360, 8, n_informative=5, n_classes=n_classes, random_state=0
    )
    X = StandardScaler().fit_transform(X)
    if kind == "binary":
        return X, y.reshape(-1, 1).astype(float), None
    return X, np.eye(3)[y], None


def _tasks(n_samples: int, batch_size, n_configs: int = len(CONFIGS)):
    """One task per config, each on its own fold of a differently sized subset."""
    rng = np.random.RandomState(1)
    tasks = []
    for i, config in enumerate(CONFIGS[:n_configs]):
        config = {"max_iter": 30, **config}
        hyper = Hyperparams(hidden_layer_sizes=(12, 6), batch_size=batch_size, **config)
        subset = rng.permutation(n_samples)[: n_samples - 17 * i]
        folds = list(KFold(3 + i % 3, shuffle=True, random_state=i).split(subset))
        train, _ = folds[i % len(folds)]
        train = subset[train]
        val = None
        if hyper.early_stopping:
            train, val = train[: -(20 + i)], train[-(20 + i) :]
        tasks.append(ModelTask(hyper=hyper, train_index=train, val_index=val, seed=i))
    return tasks


def _max_weight_diff(a: ModelState, b: ModelState) -> float:
    """Largest weight difference; a diverged model must have NaNs at the same places."""
    diffs = []
    for x, y in zip(a.coefs + a.intercepts, b.coefs + b.intercepts, strict=True):
        finite = np.isfinite(x)
        if not np.array_equal(finite, np.isfinite(y)):
            return np.inf
        diffs.append(np.abs(x[finite] - y[finite]).max(initial=0.0))
    return float(max(diffs))


def _assert_same_model(got, ref, where: str) -> None:
    assert got.n_iter == ref.n_iter, where
    assert got.hit_max_iter == ref.hit_max_iter, where
    assert got.failure == ref.failure, where
    assert got.state.t == ref.state.t, where
    assert got.state.no_improvement_count == ref.state.no_improvement_count, where
    assert _max_weight_diff(got.state, ref.state) <= WEIGHT_ATOL, where
    np.testing.assert_allclose(
        got.state.loss_curve,
        ref.state.loss_curve,
        rtol=CURVE_RTOL,
        atol=CURVE_ATOL,
        err_msg=where,
    )
    np.testing.assert_allclose(got.loss, ref.loss, rtol=CURVE_RTOL, atol=CURVE_ATOL)
    if ref.state.validation_scores is None:
        assert got.state.validation_scores is None, where
        np.testing.assert_allclose(
            got.state.best_loss, ref.state.best_loss, rtol=CURVE_RTOL, atol=CURVE_ATOL
        )
    else:
        np.testing.assert_allclose(
            got.state.validation_scores,
            ref.state.validation_scores,
            rtol=0,
            atol=1e-12,
            err_msg=where,
        )
        assert got.state.best_validation_score == pytest.approx(
            ref.state.best_validation_score, abs=1e-12
        )
    go, ro = got.state.optimizer, ref.state.optimizer
    assert (go is None) == (ro is None), where
    if ro is not None:
        assert go.step == ro.step, where
        assert go.learning_rate == pytest.approx(ro.learning_rate, rel=1e-14), where
        moments = go.first + (go.second or [])
        ref_moments = ro.first + (ro.second or [])
        for x, y in zip(moments, ref_moments, strict=True):
            np.testing.assert_allclose(x, y, rtol=0, atol=WEIGHT_ATOL, err_msg=where)


@pytest.fixture(
    scope="module",
    params=["multiclass", "regression", "binary", "multilabel", "poisson"],
)
def problem(request):
    kind = request.param
    X, Y, sw = _dataset(kind)
    loss = {"regression": "squared_error", "poisson": "poisson"}.get(kind, "log_loss")
    target_kind = "regression" if kind == "poisson" else kind
    data = DeviceData.from_numpy(
        X, Y, target_kind=target_kind, loss=loss, sample_weight=sw, dtype=torch.float64
    )
    # Fixed batches (several steps, ragged last batch) for most kinds, "auto"
    # batches (one step per epoch, a different width per model) for two.
    batch_size = "auto" if kind in ("binary", "poisson") else 32
    tasks = _tasks(len(X), batch_size)
    alone = [train_models(data, [t], keep_optimizer_state=True)[0] for t in tasks]
    return data, tasks, alone


def test_pack_is_heterogeneous(problem):
    _data, tasks, alone = problem
    assert len(plan_packs(tasks)) == 1
    assert len({len(t.train_index) for t in tasks}) >= len(tasks) - 2
    n_iters = [r.n_iter for r in alone]
    assert len(set(n_iters)) >= 3, n_iters  # models leave the pack at various epochs
    assert any(r.hit_max_iter for r in alone)
    assert any(not r.hit_max_iter for r in alone)


def test_model_in_pack_equals_model_alone(problem):
    data, tasks, alone = problem
    together = train_models(data, tasks, keep_optimizer_state=True)
    for i, (got, ref) in enumerate(zip(together, alone, strict=True)):
        _assert_same_model(got, ref, f"task {i}: {tasks[i].hyper}")


@pytest.mark.slow
@pytest.mark.parametrize("max_pack_size", [3, 5])
def test_result_independent_of_pack_order_and_size(problem, max_pack_size):
    data, tasks, alone = problem
    order = np.random.RandomState(max_pack_size).permutation(len(tasks))
    shuffled = train_models(
        data,
        [tasks[i] for i in order],
        max_pack_size=max_pack_size,
        keep_optimizer_state=True,
    )
    for pos, i in enumerate(order):
        _assert_same_model(shuffled[pos], alone[i], f"task {i}: {tasks[i].hyper}")


def test_incremental_continuation_in_pack_equals_alone(problem):
    # partial_fit-style epochs resumed from saved weights and optimizer moments.
    data, tasks, alone = problem
    resumed = []
    for task, result in zip(tasks, alone, strict=True):
        if task.hyper.early_stopping or result.failure is not None:
            continue
        resumed.append(
            ModelTask(
                hyper=task.hyper,
                train_index=task.train_index,
                seed=task.seed,
                init=result.state,
                incremental=True,
            )
        )
    for _ in range(2):
        together = train_models(data, resumed, keep_optimizer_state=True)
        single = [
            train_models(data, [t], keep_optimizer_state=True)[0] for t in resumed
        ]
        for i, (got, ref) in enumerate(zip(together, single, strict=True)):
            _assert_same_model(got, ref, f"resumed task {i}: {resumed[i].hyper}")
            assert got.n_iter == 1
        resumed = [
            ModelTask(
                hyper=t.hyper,
                train_index=t.train_index,
                seed=t.seed,
                init=r.state,
                incremental=True,
            )
            for t, r in zip(resumed, single, strict=True)
        ]


def test_overflowing_padding_rows_do_not_leak_into_a_model():
    # Padding rows of a model's batches and validation set read real rows of the
    # shared data (other folds). Here that row is an outlier on which an exp
    # (Poisson) output overflows: a model that never trains or validates on it
    # must still get exactly the result it gets alone, not NaN from inf * 0.
    rng = np.random.RandomState(0)
    X = rng.normal(size=(200, 6))
    X[0] = 1e5
    Y = rng.poisson(1.0, size=(200, 2)).astype(float)
    data = DeviceData.from_numpy(
        X, Y, target_kind="regression", loss="poisson", dtype=torch.float64
    )
    hyper = Hyperparams(
        hidden_layer_sizes=(5,),
        activation="identity",
        early_stopping=True,
        max_iter=5,
        batch_size="auto",
    )
    rows = np.arange(1, 200)
    tasks = [
        ModelTask(hyper, rows[:120], rows[120:140], seed=0),  # smallest: padded
        ModelTask(hyper, rows[:150], rows[150:199], seed=1),
    ]
    together = train_models(data, tasks)
    for i, task in enumerate(tasks):
        (alone,) = train_models(data, [task])
        assert alone.failure is None
        assert np.isfinite(alone.state.validation_scores).all()
        _assert_same_model(together[i], alone, f"task {i}")
