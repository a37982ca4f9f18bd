"""The trainer's schedule (packs, splits, worker threads) never changes a result."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold

from torchhpo.engine import DeviceData, Hyperparams, ModelTask, memory, train_models
from torchhpo.engine.trainer import plan_jobs, plan_packs


@pytest.fixture(scope="module")
def digits_tasks():
    X, y = load_digits(return_X_y=True)
    X, y = X[:400] / 16.0, y[:400]
    Y = np.eye(10)[y]
    data = DeviceData.from_numpy(
        X, Y, target_kind="multiclass", loss="log_loss", dtype=torch.float64
    )
    folds = [train for train, _ in StratifiedKFold(3).split(X, y)]
    configs = [
        dict(hidden_layer_sizes=(16,), activation="relu", solver="adam"),
        dict(hidden_layer_sizes=(16,), activation="tanh", solver="sgd"),
        dict(hidden_layer_sizes=(8, 8), activation="logistic", solver="adam"),
        dict(hidden_layer_sizes=(16,), activation="relu", solver="lbfgs"),
    ]
    tasks = [
        ModelTask(Hyperparams(max_iter=15, **c), train, seed=7 + i)
        for i, c in enumerate(configs)
        for train in folds
    ]
    return data, tasks


def _weights(results):
    return [np.concatenate([c.ravel() for c in r.state.coefs]) for r in results]


@pytest.mark.slow
def test_worker_threads_give_identical_results(digits_tasks):
    data, tasks = digits_tasks
    serial = train_models(data, tasks, n_workers=1)
    threaded = train_models(data, tasks, n_workers=3)
    for a, b in zip(_weights(serial), _weights(threaded), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [r.n_iter for r in serial] == [r.n_iter for r in threaded]


def test_worker_threads_restore_torch_threads(digits_tasks):
    data, tasks = digits_tasks
    before = torch.get_num_threads()
    train_models(data, tasks[:4], n_workers=2)
    assert torch.get_num_threads() == before


def test_plan_groups_by_shape_and_leaves_lbfgs_out(digits_tasks):
    _, tasks = digits_tasks
    packs = plan_packs(tasks)
    shapes = [{tasks[i].hyper.shape_key() for i in p} for p in packs]
    assert all(len(s) == 1 for s in shapes)
    planned = sorted(i for p in packs for i in p)
    assert planned == [i for i, t in enumerate(tasks) if t.hyper.solver != "lbfgs"]
    assert len(packs) == 2  # (16,) and (8, 8)


def test_jobs_queue_each_shape_through_slots_for_every_worker(digits_tasks):
    data, tasks = digits_tasks
    same_shape = [t for t in tasks if t.hyper.hidden_layer_sizes == (16,)] * 10
    stochastic = [i for i, t in enumerate(same_shape) if t.hyper.solver != "lbfgs"]
    budget = 10**12
    jobs = plan_jobs(same_shape, data, max_pack_size=4, budget=budget, n_workers=2)
    assert sorted(i for job in jobs for i in job.members) == stochastic
    queues = [job for job in jobs if job.slots is not None]
    assert len(queues) == 4  # two queues per worker
    assert all(job.slots == 4 < len(job) for job in queues)  # models wait for slots
    # Then the tail: small packs, every model in a slot from the start, that
    # whichever worker frees first takes, so the workers end together.
    tail = jobs[len(queues) :]
    assert tail and all(job.slots is None and len(job) <= 4 for job in tail)
    last = min(i for job in tail for i in job.members)
    assert all(i < last for job in queues for i in job.members)  # the last models
    # One worker has no one to end with: queues only.
    alone = plan_jobs(same_shape, data, max_pack_size=4, budget=budget, n_workers=1)
    assert all(job.slots == 4 < len(job) for job in alone)
    # A single model is no queue to split; the memory budget caps the slots.
    (one,) = plan_jobs(
        same_shape[:1], data, max_pack_size=4, budget=budget, n_workers=4
    )
    assert one.slots == 1
    tight = memory.task_bytes(data, [same_shape[0]]) * 3
    jobs = plan_jobs(same_shape, data, max_pack_size=None, budget=tight, n_workers=1)
    assert all(job.slots <= 3 for job in jobs)


def test_plan_splits_large_groups_into_near_equal_packs(digits_tasks):
    _, tasks = digits_tasks
    same_shape = [t for t in tasks if t.hyper.hidden_layer_sizes == (16,)] * 5
    packs = plan_packs(same_shape, max_pack_size=4)
    sizes = sorted(len(p) for p in packs)
    assert max(sizes) <= 4 and max(sizes) - min(sizes) <= 1
    assert sorted(i for p in packs for i in p) == [
        i for i, t in enumerate(same_shape) if t.hyper.solver != "lbfgs"
    ]
