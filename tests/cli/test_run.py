"""``torchhpo run``: the run folder, the saved model, the summary, no overwrite."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from safetensors.numpy import load_file
from sklearn.datasets import load_iris

from torchhpo.cli import load_config, load_model, main, run
from torchhpo.cli._report import plain_cv_results
from torchhpo.cli._runs import RunFolderExists, read_cv_results

from .conftest import tiny_config, write_config

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

EXPECTED_FILES = {
    "cv_results.csv",
    "best_params.json",
    "model.safetensors",
    "model.json",
    "config.yaml",
    "columns.json",
    "run.json",
    "plots/scores_by_param.png",
    "plots/loss_curves.png",
    "plots/time_per_pack.png",
}


def _files(folder):
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def test_run_folder_is_complete(iris_run):
    assert _files(iris_run.folder) == EXPECTED_FILES
    manifest = json.loads((iris_run.folder / "run.json").read_text())
    assert set(manifest["files"]) | {"run.json"} == EXPECTED_FILES
    assert manifest["best_index"] == iris_run.search.best_index_
    assert manifest["n_candidates"] == 4
    assert manifest["n_splits"] == 2


def test_csv_holds_cv_results(iris_run):
    results = iris_run.search.cv_results_
    header, rows = read_cv_results(iris_run.folder / "cv_results.csv")
    # The config's parameter names, as the leaderboard and best_params.json.
    assert header == [k.replace("param_mlp__", "param_") for k in results]
    assert len(rows) == len(results["params"])
    column = {name: [row[j] for row in rows] for j, name in enumerate(header)}
    for key in ("mean_test_score", "std_test_score", "split0_test_score"):
        assert [float(v) for v in column[key]] == list(results[key])
    assert [int(v) for v in column["rank_test_score"]] == list(
        results["rank_test_score"]
    )
    for cell, params in zip(column["params"], results["params"], strict=True):
        assert json.loads(cell) == {
            k.removeprefix("mlp__"): _plain(v) for k, v in params.items()
        }
    for cell, value in zip(
        column["param_hidden_layer_sizes"],
        results["param_mlp__hidden_layer_sizes"],
        strict=True,
    ):
        assert json.loads(cell) == list(value)


def test_best_params_json_uses_the_config_names(iris_run):
    saved = json.loads((iris_run.folder / "best_params.json").read_text())
    best = iris_run.search.best_params_
    assert saved == {k.removeprefix("mlp__"): _plain(v) for k, v in best.items()}


def test_saved_model_reloads_without_pickle_and_predicts_the_same(iris_run):
    tensors = load_file(iris_run.folder / "model.safetensors")
    assert all(isinstance(t, np.ndarray) for t in tensors.values())
    loaded = load_model(iris_run.folder)
    best = iris_run.search.best_estimator_
    X = load_iris().data
    assert type(loaded[-1]) is type(best[-1])
    assert loaded[-1].get_params() == best[-1].get_params()
    assert_array_equal(loaded.predict(X), best.predict(X))
    assert_array_equal(loaded.predict_proba(X), best.predict_proba(X))
    assert_array_equal(loaded[-1].classes_, best[-1].classes_)
    assert len(np.unique(best.predict(X))) == 3  # a model worth comparing


def test_config_yaml_is_the_config_as_run(iris_run):
    again = load_config(iris_run.folder / "config.yaml")
    assert again.to_config() == iris_run.config.to_config()


def test_loss_curves_are_those_of_the_scored_fold_models(iris_run):
    search, recorder = iris_run.search, iris_run.recorder
    results = search.cv_results_
    for i, params in enumerate(results["params"]):
        curves = recorder.fold_curves(params, search.n_splits_)
        for k, fold in enumerate(curves):
            assert fold.score == results[f"split{k}_test_score"][i]
            assert len(fold.loss_curve) > 1


def test_summary_shows_leaderboard_and_run_folder(iris_run):
    text = iris_run.stdout
    assert "Leaderboard: top 4 of 4 candidates, 2-fold CV" in text
    ranks = iris_run.search.cv_results_["rank_test_score"]
    best = iris_run.search.best_index_
    scores = iris_run.search.cv_results_["mean_test_score"]
    table = text.split("Leaderboard")[1].splitlines()[3:7]
    assert [int(line.split()[0]) for line in table] == sorted(ranks)
    assert f"{scores[best]:.4f} ± " in table[0]
    assert text.rstrip().endswith(f"Run folder: {iris_run.folder}")


def test_existing_run_folder_is_not_overwritten_without_force(
    iris_run, tiny_config_path, capsys
):
    before = {p: p.read_bytes() for p in iris_run.folder.rglob("*") if p.is_file()}
    with pytest.raises(RunFolderExists, match="--force"):
        run(tiny_config_path, out=iris_run.folder, progress=False)
    status = main(["run", str(tiny_config_path), "--out", str(iris_run.folder)])
    assert status == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    after = {p: p.read_bytes() for p in iris_run.folder.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.slow
def test_force_replaces_the_previous_run_and_keeps_other_files(tmp_path):
    config = tiny_config()
    config["search"]["space"] = {"hidden_layer_sizes": [[4]]}
    path = write_config(tmp_path / "one.yaml", config)
    out = tmp_path / "run"
    run(path, out=out, progress=False, plots=False)
    (out / "notes.txt").write_text("mine")
    stale = out / "cv_results.csv"
    stale.write_text("stale")
    status = main(["run", str(path), "--out", str(out), "--force", "--no-progress"])
    assert status == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert stale.read_text().startswith("mean_fit_time,")
    assert EXPECTED_FILES <= _files(out)


REPO = Path(__file__).resolve().parents[2]


def _cli(*args, cwd):
    """Run ``python -m torchhpo ARGS`` (this checkout first on the path)."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-m", "torchhpo", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_command_line_end_to_end(iris_run, tiny_config_path, tmp_path):
    """``python -m torchhpo run`` then ``predict``, in subprocesses."""
    out = tmp_path / "run"
    done = _cli("run", str(tiny_config_path), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Leaderboard: top 4 of 4 candidates" in done.stdout
    assert f"Run folder: {out}" in done.stdout
    assert "GridSearchCV" in done.stderr  # the progress bar
    assert _files(out) == EXPECTED_FILES

    # The same config gives the same results as the in-process run.
    header, rows = read_cv_results(out / "cv_results.csv")
    assert header == list(plain_cv_results(iris_run.search.cv_results_))
    assert json.loads((out / "best_params.json").read_text()) == json.loads(
        (iris_run.folder / "best_params.json").read_text()
    )
    X = load_iris().data
    loaded = load_model(out)
    best = iris_run.search.best_estimator_
    assert_array_equal(loaded.predict(X), best.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), best.predict_proba(X))

    # predict: a CSV whose columns are named as the training features.
    names = load_iris().feature_names
    data = tmp_path / "new.csv"
    lines = [",".join(names)] + [",".join(map(str, row)) for row in X[::7]]
    data.write_text("\n".join(lines) + "\n")
    done = _cli("predict", str(out), str(data), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = tmp_path / "new.predictions.csv"
    assert f"Predictions written to {written}" in done.stdout
    header, rows = read_cv_results(written)
    assert header == ["prediction", "proba_0", "proba_1", "proba_2"]
    assert [int(r[0]) for r in rows] == list(loaded.predict(X[::7]))
    proba = np.array([[float(v) for v in r[1:]] for r in rows])
    assert_array_equal(proba, loaded.predict_proba(X[::7]))

    # Neither output is overwritten without --force.
    again = _cli("run", str(tiny_config_path), "--out", str(out), cwd=tmp_path)
    assert again.returncode == 2
    assert "torchhpo: error: the run folder" in again.stderr
    assert "--force" in again.stderr
    again = _cli("predict", str(out), str(data), cwd=tmp_path)
    assert again.returncode == 2
    assert "exists; pass --force" in again.stderr
