"""Forked CPU workers: same results as one process, errors and progress come back."""

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold

import torchhpo.engine.backends.local as local
from torchhpo.engine import DeviceData, Hyperparams, ModelTask, train_models
from torchhpo.engine.backends.forked import WorkerError, fork_usable
from torchhpo.engine.backends.local import LocalBackend

pytestmark = pytest.mark.skipif(
    not fork_usable([torch.device("cpu")]), reason="forked workers need Linux fork"
)


@pytest.fixture(scope="module")
def problem():
    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16.0, y[:300]
    data = DeviceData.from_numpy(
        X, np.eye(10)[y], target_kind="multiclass", loss="log_loss"
    )
    folds = [train for train, _ in StratifiedKFold(3).split(X, y)]
    tasks = [
        ModelTask(
            Hyperparams(hidden_layer_sizes=(12,), solver=s, max_iter=8), f, seed=i
        )
        for i, s in enumerate(["adam", "sgd", "adam", "sgd"])
        for f in folds
    ]
    return data, tasks, train_models(data, tasks, n_workers=1)


def _same(results, reference):
    for a, b in zip(results, reference, strict=True):
        assert a.n_iter == b.n_iter
        assert a.state.loss_curve == b.state.loss_curve
        for ca, cb in zip(a.state.coefs, b.state.coefs, strict=True):
            np.testing.assert_array_equal(ca, cb)


def test_forked_workers_give_the_results_of_one_process(problem, monkeypatch):
    data, tasks, reference = problem
    calls = []
    real = local.run_forked
    monkeypatch.setattr(
        local, "run_forked", lambda *a, **k: calls.append(a[3]) or real(*a, **k)
    )
    finished = []
    results = train_models(
        data, tasks, n_workers=3, max_pack_size=2, on_finished=finished.append
    )
    assert calls == [3]  # the forked path ran, with three processes
    _same(results, reference)
    assert sum(finished) == len(tasks)  # progress from every process arrives
    assert torch.get_num_threads() == 1  # restored (the tests run single-threaded)


def test_thread_workers_remain_available(problem):
    data, tasks, reference = problem
    results = train_models(
        data, tasks, n_workers=2, max_pack_size=3, backend=LocalBackend(processes=False)
    )
    _same(results, reference)


def test_an_error_in_a_worker_process_reaches_the_caller(problem):
    data, tasks, _ = problem
    parent = os.getpid()

    def fail_in_children(device, n_models, epoch):
        if os.getpid() != parent and epoch == 1:
            raise ValueError("worker fault")

    with pytest.raises(ValueError, match="worker fault"):
        train_models(
            data, tasks, n_workers=2, max_pack_size=1, pack_hook=fail_in_children
        )


def test_no_forking_inside_a_daemonic_process(monkeypatch):
    import multiprocessing

    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True)
    assert not fork_usable([torch.device("cpu")])


def test_a_worker_leaves_without_waiting_for_its_threads(problem):
    # A worker exits as soon as its work is on the pipe: a thread left running in
    # it (or a lock a thread of the parent held at the fork) cannot keep it alive.
    data, tasks, reference = problem
    parent = os.getpid()

    def linger_in_children(device, n_models, epoch):
        if os.getpid() != parent and epoch is None:
            threading.Thread(target=time.sleep, args=(3600,)).start()

    started = time.monotonic()
    results = train_models(
        data, tasks, n_workers=2, max_pack_size=2, pack_hook=linger_in_children
    )
    _same(results, reference)
    assert time.monotonic() - started < 600  # (pytest-timeout catches a hang first)


def test_a_failing_callback_ends_the_training_with_its_error(problem):
    data, tasks, _ = problem

    def fail(index, result):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        train_models(data, tasks, n_workers=2, max_pack_size=1, on_result=fail)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_forking_after_thread_workers(problem):
    # Thread workers that just ended can leave MKL mid-cleanup at the next fork;
    # a child then spun forever in MKL's allocator (before _quiesce_mkl: within
    # 20 such rounds, every time). The timeout turns a hang into a failure.
    data, tasks, reference = problem
    threads = LocalBackend(processes=False)
    for _ in range(40):
        train_models(data, tasks, n_workers=2, max_pack_size=3, backend=threads)
        results = train_models(data, tasks, n_workers=2, max_pack_size=3)
    _same(results, reference)


def _stop_once_in_children(marker):
    """A pack hook that stops (SIGSTOP) the first worker to start an epoch 1."""
    parent = os.getpid()

    def hook(device, n_models, epoch):
        if os.getpid() != parent and epoch == 1:
            try:
                descriptor = os.open(marker, os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                return
            os.close(descriptor)
            os.kill(os.getpid(), signal.SIGSTOP)

    return hook


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_stopped_worker_is_killed_and_its_pack_retried(
    problem, tmp_path, monkeypatch
):
    data, tasks, reference = problem
    monkeypatch.setenv("TORCHHPO_WORKER_TIMEOUT", "3")
    marker = tmp_path / "stopped"
    results = train_models(
        data,
        tasks,
        n_workers=2,
        max_pack_size=2,
        pack_hook=_stop_once_in_children(marker),
    )
    assert marker.exists()  # a worker was stopped
    _same(results, reference)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_pack_whose_workers_stop_twice_is_a_worker_error(problem, monkeypatch):
    data, tasks, _ = problem
    monkeypatch.setenv("TORCHHPO_WORKER_TIMEOUT", "2")
    parent = os.getpid()

    def stop_in_children(device, n_models, epoch):
        if os.getpid() != parent and epoch == 1:
            os.kill(os.getpid(), signal.SIGSTOP)

    with pytest.raises(WorkerError, match=r"silent for 2 s .* twice .*\(tasks \d"):
        train_models(
            data, tasks, n_workers=2, max_pack_size=2, pack_hook=stop_in_children
        )


def test_the_silence_limit_must_be_positive(problem, monkeypatch):
    data, tasks, _ = problem
    monkeypatch.setenv("TORCHHPO_WORKER_TIMEOUT", "0")
    with pytest.raises(ValueError, match="TORCHHPO_WORKER_TIMEOUT"):
        train_models(data, tasks, n_workers=2, max_pack_size=2)
