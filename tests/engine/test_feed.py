"""Models from a feed: asked as slots free, trained as if they had been given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchhpo.engine import DeviceData, Hyperparams, ModelTask, train_models
from torchhpo.engine.feed import TaskFeed


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(240, 6))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int) + (X[:, 2] > 0.5)
    return DeviceData.from_numpy(
        X, np.eye(3)[y], target_kind="multiclass", loss="log_loss", dtype=torch.float64
    )


def _tasks(n: int) -> list[ModelTask]:
    rng = np.random.RandomState(1)
    shapes = [(8,), (4, 4)]
    return [
        ModelTask(
            Hyperparams(
                hidden_layer_sizes=shapes[i % 2],
                activation=["relu", "tanh"][(i // 2) % 2],
                solver=["adam", "sgd"][(i // 4) % 2],
                max_iter=int(rng.randint(2, 25)),
                batch_size=32,
            ),
            train_index=np.arange(200) + (i % 3) * 10,
            seed=i,
            group=i // 2,
        )
        for i in range(n)
    ]


class ListFeed(TaskFeed):
    """Hands out a list a few models at a time, recording who asked."""

    def __init__(self, tasks, per_call: int) -> None:
        self.waiting = list(tasks)
        self.per_call = per_call
        self.asked: list[tuple] = []
        self.handed: list[ModelTask] = []

    def more(self, shape_key, free):
        self.asked.append((shape_key, free))
        out = []
        for task in list(self.waiting):
            if len(out) == min(free, self.per_call):
                break
            if shape_key is None and out:
                shape_key = out[0].hyper.shape_key()
            if shape_key is None or task.hyper.shape_key() == shape_key:
                out.append(task)
        self.waiting = [t for t in self.waiting if all(t is not o for o in out)]
        self.handed.extend(out)
        return out

    def exhausted(self):
        return not self.waiting


@pytest.mark.slow
@pytest.mark.parametrize("n_workers", [1, 2])
def test_fed_models_end_as_given_models(data, n_workers):
    tasks = _tasks(30)
    given = train_models(data, tasks, max_pack_size=4, n_workers=1)
    feed = ListFeed(tasks, per_call=3)
    seen = {}
    fed = train_models(
        data,
        [],
        feed=feed,
        max_pack_size=4,
        n_workers=n_workers,
        on_result=lambda i, r: seen.setdefault(i, r),
    )
    assert len(fed) == len(tasks) and sorted(seen) == list(range(len(tasks)))
    # Numbered as handed out.
    order = [next(i for i, t in enumerate(tasks) if t is h) for h in feed.handed]
    for index, i in enumerate(order):
        assert fed[index].n_iter == given[i].n_iter
        assert fed[index].state.loss_curve == given[i].state.loss_curve
        for a, b in zip(fed[index].state.coefs, given[i].state.coefs, strict=True):
            np.testing.assert_array_equal(a, b)
    # Packs asked for their own shape while running, idle workers for any.
    assert any(key is not None for key, _ in feed.asked)
    assert any(key is None for key, _ in feed.asked)
