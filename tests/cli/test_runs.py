"""The run folder cannot be redirected, lost, or claimed twice."""

import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from torchhpo.cli import _runner as runner
from torchhpo.cli import run
from torchhpo.cli._runs import RunFolder, RunFolderExists, read_cv_results

from .conftest import tiny_config, write_config

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path):
    small = tiny_config(
        search={
            "kind": "grid",
            "space": {"hidden_layer_sizes": [[4], [6]]},
            "cv": 2,
            "scoring": "accuracy",
        }
    )
    small["estimator"]["params"]["max_iter"] = 20
    return write_config(tmp_path / "small.yaml", small)


def _run(config, out, **options):
    return run(config, out=out, progress=False, stdout=io.StringIO(), **options)


@pytest.mark.slow
def test_links_in_an_old_run_folder_are_replaced_not_followed(config, tmp_path):
    out = tmp_path / "run"
    _run(config, out)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("model.pt", "model.safetensors", "cv_results.csv", "model.json"):
        (out / name).unlink(missing_ok=True)
        os.symlink(victim, out / name)
    shutil.rmtree(out / "plots")
    os.symlink(elsewhere, out / "plots")

    result = _run(config, out, force=True)
    assert victim.read_text() == "precious"  # no write went through a link
    assert list(elsewhere.iterdir()) == []
    assert not (out / "plots").is_symlink() and any((out / "plots").iterdir())
    for path in result.files:
        assert path.is_file() and not path.is_symlink(), path
        assert path.parent in (out, out / "plots")


def _fail_to_save(*args, **kwargs):
    raise OSError(28, "No space left on device")


def test_a_failed_write_keeps_the_results_and_names_where(
    config, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    monkeypatch.setattr(runner, "save_model", _fail_to_save)
    with pytest.raises(ValueError, match="No space left on device") as caught:
        _run(config, out)
    message = str(caught.value)
    kept = Path(re.search(r"kept in (\S+);", message).group(1))
    header, rows = read_cv_results(kept / "cv_results.csv")
    assert "mean_test_score" in header and len(rows) == 2  # the search's results
    assert (kept / "best_params.json").is_file()
    assert not out.exists()  # no partial run folder


def test_a_failed_write_over_a_run_leaves_that_run_whole(config, tmp_path, monkeypatch):
    out = tmp_path / "run"
    _run(config, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    monkeypatch.setattr(runner, "save_model", _fail_to_save)
    with pytest.raises(ValueError, match=r"kept in .*the run folder was not changed"):
        _run(config, out, force=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


HOLDER = textwrap.dedent(
    """
    import sys
    from torchhpo.cli._runs import RunFolder
    folder = RunFolder(sys.argv[1]).claim()
    print("claimed", flush=True)
    sys.stdin.readline()
    folder.release()
    """
)


@pytest.mark.slow
def test_a_second_run_on_the_same_folder_stops_before_training(
    config, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def no_training(*args, **kwargs):
        raise AssertionError("the second run trained")

    monkeypatch.setattr(runner, "build_search", no_training)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        with pytest.raises(RunFolderExists, match=rf"another run \(pid {holder.pid} "):
            _run(config, out)
        with pytest.raises(RunFolderExists, match="being written by another run"):
            _run(config, out, force=True)
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    assert not out.exists()  # the holder wrote nothing and left nothing


def test_without_a_staging_folder_the_results_go_to_the_temporary_folder(
    config, tmp_path, monkeypatch
):
    out = tmp_path / "run"

    def full_disk(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RunFolder, "open", full_disk)
    system_temp = tmp_path / "system-tmp"
    system_temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_temp))
    with pytest.raises(ValueError, match="No space left on device") as caught:
        _run(config, out)
    kept = Path(re.search(r"kept in (\S+);", str(caught.value)).group(1))
    assert kept.parent == system_temp
    assert sorted(p.name for p in kept.iterdir()) == [
        "best_params.json",
        "cv_results.csv",
    ]
    assert not out.exists()
