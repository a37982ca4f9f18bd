"""The fused CPU kernels' build: cached per machine, optional, never in the way."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from torchhpo.engine import DeviceData, Hyperparams, ModelTask, Pack, native
from torchhpo.engine import rng as rng_module


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A process that has not loaded the kernels yet, with an empty cache."""
    monkeypatch.setattr(native, "_loaded", None)
    monkeypatch.setattr(native, "_failed", False)
    monkeypatch.setenv("TORCHHPO_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("TORCHHPO_NATIVE", raising=False)
    return tmp_path


def _pack():
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(60, 4)), rng.randint(3, size=60)
    data = DeviceData.from_numpy(
        X, np.eye(3)[y], target_kind="multiclass", loss="log_loss"
    )
    hyper = Hyperparams(hidden_layer_sizes=(5,), max_iter=3, batch_size=16)
    return Pack(data, [ModelTask(hyper, np.arange(60), seed=0)])


def test_built_once_into_the_cache_then_reused(fresh, monkeypatch):
    if native.load() is None:
        pytest.skip("no working C compiler here")
    assert len(list(fresh.glob("kernels-*.so"))) == 1  # built into the cache
    monkeypatch.setattr(native, "_loaded", None)

    def no_compiler(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(native, "_compile", no_compiler)
    assert native.load() is not None  # from the cache
    assert native.kernels(torch.float32, torch.device("cpu")) is not None


def test_without_a_compiler_training_runs_on_aten(fresh, monkeypatch, caplog):
    monkeypatch.setenv("CC", "false")  # a compiler that always fails
    with caplog.at_level(logging.DEBUG, logger="torchhpo.engine"):
        assert native.load() is None
    assert "fused CPU kernels unavailable" in caplog.text
    pack = _pack()
    losses, _, _ = pack.run_epoch()
    assert pack._fused_step().native is None
    assert np.isfinite(losses).all()


def test_can_be_switched_off(fresh, monkeypatch):
    monkeypatch.setenv("TORCHHPO_NATIVE", "0")
    assert native.kernels(torch.float32, torch.device("cpu")) is None
    assert _pack()._fused_step().native is None


def test_only_for_cpu_float32_and_float64(fresh):
    assert native.kernels(torch.float16, torch.device("cpu")) is None
    assert native.kernels(torch.float32, torch.device("meta")) is None


def _uneven_pack():
    rng = np.random.RandomState(1)
    X, y = rng.normal(size=(300, 4)), rng.randint(3, size=300)
    data = DeviceData.from_numpy(
        X, np.eye(3)[y], target_kind="multiclass", loss="log_loss"
    )
    tasks = []
    for i, (batch, shuffle) in enumerate([(16, True), (50, False), (7, True)]):
        hyper = Hyperparams(hidden_layer_sizes=(5,), batch_size=batch, shuffle=shuffle)
        train = rng.permutation(300)[: 300 - 97 * i]
        tasks.append(ModelTask(hyper, train, seed=i))
    return Pack(data, tasks)


def test_epoch_rows_are_the_tensor_path_rows(monkeypatch):
    if native.load() is None:
        pytest.skip("no working C compiler here")
    pack = _uneven_pack()
    assert pack.uneven_steps  # models of several lengths and batch sizes
    for _ in range(3):
        pack.epochs += 1
        base = rng_module.stream_base(
            pack.seeds, rng_module.STREAM_SHUFFLE, pack.epochs
        )
        fused = pack._batch_rows(base)
        with monkeypatch.context() as patch:
            patch.setattr(native, "kernels", lambda dtype, device: None)
            expected = pack._batch_rows(base)
        assert fused.shape == (pack.n_steps, pack.size, pack.width)
        assert torch.equal(fused, expected)
    # Each shuffling model's real rows are its training rows, once each.
    real = pack.valid.bool()
    for m, task in enumerate(pack.tasks):
        assert sorted(fused[:, m][real[:, m]].tolist()) == sorted(task.train_index)
