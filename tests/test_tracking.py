"""torchhpo.tracking: MLflow records a torchhpo search as autologging records
scikit-learn's, held side by side in a local file store; loss curves as
TensorBoard scalars. Skipped without mlflow / tensorboard."""

from __future__ import annotations

import warnings

import pytest
from sklearn.datasets import load_iris
from sklearn.model_selection import GridSearchCV as SkGridSearchCV
from sklearn.neural_network import MLPClassifier as SkMLPClassifier

import torchhpo

mlflow = pytest.importorskip("mlflow")
tracking = pytest.importorskip("torchhpo.tracking")

GRID = {"alpha": [1e-4, 1e-3, 1e-2], "learning_rate_init": [1e-3, 1e-2]}


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A local file store with one experiment; autologging off afterwards."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    experiment = mlflow.set_experiment("torchhpo-tests")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield experiment.experiment_id
    mlflow.sklearn.autolog(disable=True)
    tracking.autolog(disable=True)
    mlflow.set_tracking_uri(None)


def _runs(experiment_id):
    """(parent, children) of the experiment's only search."""
    runs = mlflow.MlflowClient().search_runs([experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert all(
        c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children
    )
    return parent, children


def _fit(search_cls, mlp_cls):
    X, y = load_iris(return_X_y=True)
    mlp = mlp_cls(hidden_layer_sizes=(4,), max_iter=30, random_state=0)
    return search_cls(mlp, GRID, cv=2).fit(X, y)


@pytest.mark.slow
def test_search_is_logged_as_autologging_logs_scikit_learns(store, tmp_path):
    mlflow.sklearn.autolog(log_models=False, log_datasets=False, silent=True)
    _fit(SkGridSearchCV, SkMLPClassifier)
    theirs, their_children = _runs(store)

    mlflow.sklearn.autolog(disable=True)
    ours_id = mlflow.set_experiment("ours").experiment_id
    tracking.autolog()
    search = _fit(torchhpo.GridSearchCV, SkMLPClassifier)
    ours, our_children = _runs(ours_id)

    their_params = set(theirs.data.params)
    assert {k for k in their_params if k.startswith("best_")} == {
        k for k in ours.data.params if k.startswith("best_")
    }
    assert their_params <= set(ours.data.params)  # plus torchhpo's options
    assert ours.data.params["best_alpha"] == str(search.best_params_["alpha"])
    assert ours.data.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert "training_score" in ours.data.metrics
    assert ours.data.tags["estimator_name"] == "GridSearchCV"
    artifacts = mlflow.MlflowClient().list_artifacts(ours.info.run_id)
    assert "cv_results.csv" in {a.path for a in artifacts}
    assert len(our_children) == len(their_children) == 5
    for child, other in zip(our_children, their_children, strict=True):
        assert set(child.data.params) == set(other.data.params)
        assert set(child.data.metrics) == set(other.data.metrics)
    ranks = sorted(int(c.data.metrics["rank_test_score"]) for c in our_children)
    assert ranks == sorted(search.cv_results_["rank_test_score"])[:5]


def test_optuna_search_logs_its_trials(store):
    optuna = pytest.importorskip("optuna")
    X, y = load_iris(return_X_y=True)
    search = torchhpo.OptunaSearchCV(
        torchhpo.MLPClassifier(hidden_layer_sizes=(4,), max_iter=20, random_state=0),
        {"alpha": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)},
        cv=2,
        n_trials=4,
        random_state=0,
        progress=False,
    ).fit(X, y)
    with mlflow.start_run():
        tracking.log_search(search, max_tuning_runs=None)
    parent, children = _runs(store)
    assert parent.data.params["best_alpha"] == str(search.best_params_["alpha"])
    assert parent.data.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert len(children) == 4
    best = next(c for c in children if c.data.metrics["rank_test_score"] == 1)
    assert best.data.metrics["mean_test_score"] == pytest.approx(search.best_score_)


def test_loss_curves_as_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import (
        EventAccumulator,
    )

    curves = [("rank1_alpha=0.01", [[1.0, 0.5, 0.25], [0.9, 0.4]]), ("rank2", [None])]
    written = tracking.write_loss_curves(tmp_path, curves)
    assert [p.name for p in written] == ["rank1_alpha=0.01", "rank2"]
    events = EventAccumulator(str(written[0]))
    events.Reload()
    fold0 = [(e.step, e.value) for e in events.Scalars("loss/fold0")]
    assert fold0 == [(1, 1.0), (2, 0.5), (3, 0.25)]
    mean = [e.value for e in events.Scalars("loss/mean")]
    assert mean == pytest.approx([0.95, 0.45, 0.25])
