"""Pack sizing, out-of-memory splits and several devices never change a result.

Each test compares against a reference run of the same tasks in the same test.
"""

import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold

from torchhpo.engine import DeviceData, Hyperparams, ModelTask, memory, train_models


@pytest.fixture(scope="module")
def problem():
    X, y = load_digits(n_class=4, return_X_y=True)
    X, y = X[:160] / 16.0, y[:160]
    data = DeviceData.from_numpy(
        X, np.eye(4)[y], target_kind="multiclass", loss="log_loss", dtype=torch.float64
    )
    folds = [train for train, _ in StratifiedKFold(2).split(X, y)]
    configs = [
        dict(solver="adam", max_iter=2),
        dict(solver="sgd", max_iter=6, activation="tanh"),
        dict(solver="adam", max_iter=6, alpha=1e-2, early_stopping=True),
        dict(solver="sgd", max_iter=4, learning_rate="adaptive"),
        dict(solver="adam", max_iter=6, hidden_layer_sizes=(6, 4)),
    ]
    tasks = [
        ModelTask(
            Hyperparams(**{"hidden_layer_sizes": (8,), "tol": 0.0, **c}),
            train,
            seed=11 + i,
        )
        for i, c in enumerate(configs)
        for train in folds
    ]
    reference = train_models(data, tasks, n_workers=1)
    return data, tasks, reference


def assert_same(results, reference):
    assert len(results) == len(reference)
    for got, expected in zip(results, reference, strict=True):
        assert got.n_iter == expected.n_iter
        assert got.state.loss_curve == expected.state.loss_curve
        for a, b in zip(got.state.coefs, expected.state.coefs, strict=True):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(got.state.intercepts, expected.state.intercepts, strict=True):
            np.testing.assert_array_equal(a, b)


class Recorder:
    """A pack hook that records pack sizes and can inject a failure."""

    def __init__(self, fail=None):
        self.fail = fail
        self.starts = []  # pack sizes when allocated
        self.epochs = []  # (size, epoch)
        self.threads = set()
        self.lock = threading.Lock()

    def __call__(self, device, n_models, epoch):
        with self.lock:
            if epoch is None:
                self.starts.append(n_models)
                self.threads.add(threading.get_ident())
            else:
                self.epochs.append((n_models, epoch))
        if self.fail is not None:
            self.fail(n_models, epoch)


def out_of_memory(message="CUDA out of memory (injected)"):
    return torch.OutOfMemoryError(message)


def test_injected_oom_splits_packs_until_they_fit(problem):
    data, tasks, reference = problem

    def fail(n_models, epoch):
        if epoch is None and n_models > 2:
            raise out_of_memory()

    hook = Recorder(fail)
    delivered = []
    results = train_models(
        data,
        tasks,
        n_workers=1,
        pack_hook=hook,
        on_result=lambda i, r: delivered.append(i),
    )
    assert_same(results, reference)
    assert sorted(delivered) == list(range(len(tasks)))  # each model exactly once
    assert max(hook.starts) > 2  # the big packs were tried ...
    assert all(n <= 2 for n, _ in hook.epochs)  # ... but only small ones trained


def test_oom_mid_pack_keeps_finished_models_and_retries_the_rest(problem):
    data, tasks, reference = problem
    fired = []

    def fail(n_models, epoch):
        # Once, at epoch 3 of the first big pack: its max_iter=2 models are done.
        if epoch == 3 and n_models > 2 and not fired:
            fired.append(n_models)
            raise out_of_memory()

    hook = Recorder(fail)
    delivered = []
    results = train_models(
        data,
        tasks,
        n_workers=1,
        pack_hook=hook,
        on_result=lambda i, r: delivered.append(i),
    )
    assert fired
    assert_same(results, reference)
    assert sorted(delivered) == list(range(len(tasks)))
    # The retry packs hold only the models that had not finished.
    first = hook.starts[0]
    assert sum(hook.starts[1:3]) == fired[0]
    assert fired[0] < first


def test_a_model_out_of_memory_alone_fails_on_its_own(problem):
    data, tasks, _ = problem
    epochs = []

    def fail(n_models, epoch):
        raise out_of_memory()

    results = train_models(
        data, tasks[:3], n_workers=1, pack_hook=Recorder(fail), on_epochs=epochs.append
    )
    # Split down to single models, each then failed; nothing raised, none lost.
    assert all(r.out_of_memory and "(injected)" in r.failure for r in results)
    assert sum(epochs) == sum(t.hyper.max_iter for t in tasks[:3])


def test_an_unallocatable_model_fails_and_the_others_train(problem):
    data, tasks, reference = problem
    huge = ModelTask(
        replace(tasks[0].hyper, hidden_layer_sizes=(10**12,)), tasks[0].train_index
    )
    for lbfgs in (False, True):
        if lbfgs:
            huge = replace(huge, hyper=replace(huge.hyper, solver="lbfgs"))
        results = train_models(data, [huge, *tasks[:2]], n_workers=1)
        assert results[0].out_of_memory and results[0].n_iter == 0
        assert "[64, 1000000000000, 4]" in results[0].failure
        assert_same(results[1:], reference[:2])


def test_other_errors_are_not_retried(problem):
    data, tasks, _ = problem

    def fail(n_models, epoch):
        raise ValueError("not a memory error")

    hook = Recorder(fail)
    with pytest.raises(ValueError, match="not a memory error"):
        train_models(data, tasks, n_workers=1, pack_hook=hook)
    assert len(hook.starts) == 1


def test_memory_budget_caps_pack_size(problem):
    data, tasks, reference = problem
    adam = [i for i, t in enumerate(tasks) if t.hyper.hidden_layer_sizes == (8,)]
    per_model = memory.task_bytes(data, [tasks[i] for i in adam])
    hook = Recorder()
    results = train_models(
        data, tasks, n_workers=1, memory_budget=3 * per_model, pack_hook=hook
    )
    assert_same(results, reference)
    assert max(hook.starts) <= 3
    assert len(hook.starts) > 2


def test_cuda_budget_is_a_share_of_free_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (10**9, 4 * 10**9))
    cuda = torch.device("cuda", 0)
    assert memory.pack_budget(cuda) == int(10**9 * memory.CUDA_FREE_FRACTION)
    assert memory.pack_budget(cuda, concurrent=2) == memory.pack_budget(cuda) // 2
    assert memory.pack_budget(cuda, memory_budget=1000) == 1000


def test_model_bytes_grow_with_the_model():
    small = memory.model_bytes([64, 10, 10], 200, 1000, 0, torch.float32, False)
    wide = memory.model_bytes([64, 100, 10], 200, 1000, 0, torch.float32, False)
    double = memory.model_bytes([64, 10, 10], 200, 1000, 0, torch.float64, False)
    stopping = memory.model_bytes([64, 10, 10], 200, 1000, 100, torch.float32, True)
    assert small < wide and small < double and small < stopping


def test_several_devices_give_the_results_of_one(problem):
    data, tasks, reference = problem

    def slow(n_models, epoch):
        if epoch is None:
            time.sleep(0.05)  # let both workers take packs

    hook = Recorder(slow)
    results = train_models(
        data, tasks, devices=["cpu", "cpu"], max_pack_size=2, pack_hook=hook
    )
    assert_same(results, reference)
    assert len(hook.threads) == 2


def test_an_error_on_one_device_stops_the_others(problem):
    data, tasks, _ = problem

    def fail(n_models, epoch):
        if epoch == 1:
            raise ValueError("device fault")

    hook = Recorder(fail)
    with pytest.raises(ValueError, match="device fault"):
        train_models(
            data, tasks, devices=["cpu", "cpu"], max_pack_size=2, pack_hook=hook
        )
    assert len(hook.starts) < len(tasks) / 2  # the queue was not drained
