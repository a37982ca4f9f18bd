"""The fused CPU kernels' build: cached per machine, optional, never in the way."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from torchhpo.engine import (
    DeviceData,
    Hyperparams,
    ModelTask,
    Pack,
    instruments,
    native,
)
from torchhpo.engine import rng as rng_module
from torchhpo.engine.native import build


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A process that has not loaded the kernels yet, with an empty cache.

    It compiles them (``TORCHHPO_NATIVE=compile``), even where an in-place
    build put the prebuilt extension beside the source.
    """
    monkeypatch.setattr(native, "_loaded", None)
    monkeypatch.setattr(native, "_path", None)
    monkeypatch.setenv("TORCHHPO_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TORCHHPO_NATIVE", "compile")
    return tmp_path


def _pack():
    rng = np.random.RandomState(0)
    X, y = rng.normal(size=(60, 4)), rng.randint(3, size=60)
    data = DeviceData.from_numpy(
        X, np.eye(3)[y], target_kind="multiclass", loss="log_loss"
    )
    hyper = Hyperparams(hidden_layer_sizes=(5,), max_iter=3, batch_size=16)
    return Pack(data, [ModelTask(hyper, np.arange(60), seed=0)])


def _trained_on_aten(pack: Pack) -> tuple[bool, np.ndarray]:
    """Train an epoch; whether its steps ran ATen's matmuls, and the losses."""
    with instruments.measure() as measured:
        losses, _, _ = pack.run_epoch()
    return any("bmm" in op for op in measured.snapshot().ops), losses


def test_the_native_step_runs_no_aten_matmul():
    if native.load() is None:
        pytest.skip("no working C compiler here")
    on_aten, losses = _trained_on_aten(_pack())
    assert not on_aten and np.isfinite(losses).all()


@pytest.mark.slow
def test_built_once_into_the_cache_then_reused(fresh, monkeypatch):
    if native.load() is None:
        pytest.skip("no working C compiler here")
    assert len(list(fresh.glob("kernels-*.so"))) == 1  # built into the cache
    monkeypatch.setattr(native, "_loaded", None)
    monkeypatch.setattr(native, "_path", None)

    def no_compiler(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(build, "_compile", no_compiler)
    assert native.load() is not None  # from the cache
    assert native.kernels(torch.float32, torch.device("cpu")) is not None


def test_without_a_compiler_training_runs_on_aten(fresh, monkeypatch):
    monkeypatch.setenv("CC", "false")  # a compiler that always fails
    with pytest.warns(RuntimeWarning, match="fused CPU kernels unavailable"):
        assert native.load() is None
    on_aten, losses = _trained_on_aten(_pack())
    assert on_aten and np.isfinite(losses).all()


def test_can_be_switched_off(fresh, monkeypatch):
    monkeypatch.setenv("TORCHHPO_NATIVE", "0")
    assert native.kernels(torch.float32, torch.device("cpu")) is None
    on_aten, _ = _trained_on_aten(_pack())
    assert on_aten


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


# -- What is loaded is what this user built ------------------------------------

_PLANTED = """
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen("%s", "w");
    if (f) { fputs("ran", f); fclose(f); }
}
"""


def _built(folder):
    """The build in ``folder`` (after one load), or skip without a compiler."""
    if native.load() is None:
        pytest.skip("no working C compiler here")
    (library,) = folder.glob("kernels-*.so")
    return library


@pytest.mark.slow
def test_a_library_in_a_folder_of_another_user_is_never_loaded(
    fresh, monkeypatch, tmp_path_factory
):
    library = _built(fresh)  # learn the build's file name
    marker = tmp_path_factory.mktemp("marker") / "constructor-ran"
    foreign = tmp_path_factory.mktemp("foreign")
    source = foreign / "planted.c"
    source.write_text(_PLANTED % marker)
    planted = foreign / library.name
    compiler = native.Platform.current().compiler()
    subprocess.run([*compiler, "-shared", "-fPIC", "-o", planted, source], check=True)
    (foreign / (library.name + ".sha256")).write_text(
        hashlib.sha256(planted.read_bytes()).hexdigest()
    )
    for path in (foreign, planted, foreign / (library.name + ".sha256")):
        os.chown(path, 12345, 12345)  # another local user's
    monkeypatch.setenv("TORCHHPO_CACHE_DIR", str(foreign))
    monkeypatch.setattr(native, "_loaded", None)
    monkeypatch.setattr(native, "_path", None)
    private = tmp_path_factory.mktemp("tmp")
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    assert native.load() is not None  # built again, in the private folder
    assert not marker.exists()  # the planted constructor never ran
    (built,) = private.glob(f"torchhpo-*/{library.name}")
    assert stat.S_IMODE(built.parent.stat().st_mode) == 0o700


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX ownership")
def test_a_folder_of_another_user_is_refused_with_a_warning(fresh, monkeypatch):
    foreign = fresh / "foreign"
    foreign.mkdir()
    os.chown(foreign, 12345, 12345)
    monkeypatch.setenv("TORCHHPO_CACHE_DIR", str(foreign))
    fallback = fresh / "tmp"
    (fallback / f"torchhpo-{os.getuid()}").mkdir(parents=True)
    os.chown(fallback / f"torchhpo-{os.getuid()}", 12345, 12345)
    monkeypatch.setattr(tempfile, "tempdir", str(fallback))
    with pytest.warns(RuntimeWarning, match="owned by uid 12345") as caught:
        assert native.load() is None
        assert native.load() is None  # one warning per process
    assert len(caught) == 1


_LOAD = "from torchhpo.engine import native; print(native.load() is not None)"


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_a_damaged_build_is_rebuilt_before_loading(fresh, damage):
    library = _built(fresh)
    whole = library.read_bytes()
    # Damaged through a new file renamed over it: this process may have the
    # library mapped, and writing into that very file would SIGBUS it here.
    damaged = library.with_suffix(".damaged")
    damaged.write_bytes(
        {"truncated": whole[: len(whole) // 2], "empty": b"", "garbage": b"\x7fELF"}[
            damage
        ]
    )
    os.replace(damaged, library)
    # A fresh interpreter: a truncated library would SIGBUS it inside dlopen.
    env = {**os.environ, "TORCHHPO_CACHE_DIR": str(fresh), "TORCHHPO_NATIVE": "compile"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(native.__file__).parents[3])])
    done = subprocess.run(
        [sys.executable, "-c", _LOAD], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    assert library.stat().st_size > len(whole) // 2  # rebuilt in place


@pytest.mark.slow
def test_a_hung_compiler_is_stopped_and_training_falls_back(fresh, monkeypatch):
    hang = fresh / "hang-cc"
    hang.write_text("#!/bin/sh\nsleep 60\n")  # its child holds the pipes too
    hang.chmod(0o755)
    monkeypatch.setenv("CC", str(hang))
    monkeypatch.setenv("TORCHHPO_COMPILE_TIMEOUT", "0.5")
    with pytest.warns(RuntimeWarning, match="TORCHHPO_COMPILE_TIMEOUT"):
        assert native.load() is None
