"""``search.kind: optuna``: a config runs an OptunaSearchCV and writes its run folder.

Skipped without Optuna.
"""

import io
import json

import pytest

from torchhpo.cli import ConfigError, load_config, run
from torchhpo.cli._runs import read_cv_results

from .conftest import tiny_config, write_config

pytest.importorskip("optuna")
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _optuna_config(tmp_path, **search):
    spec = {
        "kind": "optuna",
        "space": {
            "hidden_layer_sizes": [[8], [6, 4]],
            "activation": ["relu", "tanh"],
            "alpha": {"loguniform": [1e-5, 1e-1]},
        },
        "cv": 2,
        "scoring": "accuracy",
        "n_trials": 4,
        "pruner": "median",
        "max_iter": 4,
        "random_state": 0,
        **search,
    }
    return write_config(tmp_path / "opt.yaml", tiny_config(search=spec))


def test_seed_optuna_config_loads():
    from .test_config import CONFIGS

    config = load_config(CONFIGS / "seed_optuna.yaml")
    assert config.kind == "optuna"
    assert config.optuna["n_trials"] == 20
    assert config.optuna["pruner"] == "median"


@pytest.mark.slow
def test_optuna_run_writes_trials_and_plots_and_continues(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    path = _optuna_config(tmp_path, storage=storage)
    stdout = io.StringIO()
    result = run(path, out=tmp_path / "run", progress=False, stdout=stdout)
    text = stdout.getvalue()
    assert "optuna search, 4 candidates" in text
    assert "Leaderboard" in text
    header, rows = read_cv_results(tmp_path / "run" / "cv_results.csv")
    assert header[:3] == ["number", "state", "pruned_at_epoch"]
    assert "rank_test_score" in header and "param_alpha" in header
    assert len(rows) == 4
    for name in ("optimization_history.png", "intermediate_values.png"):
        assert (tmp_path / "run" / "plots" / name).is_file()
    assert result.search.n_trials_ == 4
    hidden = result.search.best_estimator_[-1].hidden_layer_sizes
    assert hidden in ((8,), (6, 4))
    # The study is stored: a rerun with a larger n_trials runs only the difference.
    more = _optuna_config(tmp_path, storage=storage, n_trials=6)
    again = run(more, out=tmp_path / "run2", progress=False, stdout=io.StringIO())
    assert again.search.n_trials_ == 6


@pytest.mark.parametrize(
    "search, key",
    [
        ({"n_iter": 3}, "search.n_iter"),
        ({"pruner": "medain"}, "search.pruner"),
        ({"timeout": -1}, "search.timeout"),
    ],
)
def test_optuna_config_errors_name_the_key(tmp_path, search, key):
    with pytest.raises(ConfigError, match=key):
        load_config(_optuna_config(tmp_path, **search))


def test_optuna_keys_need_kind_optuna(tmp_path):
    config = tiny_config()
    config["search"]["n_trials"] = 5
    with pytest.raises(ConfigError, match="only used by kind: optuna"):
        load_config(write_config(tmp_path / "grid.yaml", config))


@pytest.mark.slow
def test_study_names_parameters_as_the_config(tmp_path):
    """With preprocessing the study says ``alpha`` (the config), not ``mlp__alpha``."""
    path = _optuna_config(tmp_path)
    config = load_config(path)
    assert config.preprocessing != "none"  # the MLP is a Pipeline step
    result = run(path, out=tmp_path / "run", progress=False, stdout=io.StringIO())
    study = result.search.study_
    names = set(config.space)
    for trial in study.trials:
        assert set(trial.params) <= names
        assert set(trial.distributions) <= names
    assert set(study.best_params) == names
    best = json.loads((tmp_path / "run" / "best_params.json").read_text())
    assert set(best) == set(study.best_params)
    header, _ = read_cv_results(tmp_path / "run" / "cv_results.csv")
    assert {f"param_{name}" for name in names} <= set(header)


@pytest.mark.slow
def test_study_stored_with_pipeline_names_is_continued(tmp_path):
    """A study an earlier torchhpo stored with ``mlp__`` names keeps its names."""
    import optuna

    storage = f"sqlite:///{tmp_path / 'old.db'}"
    path = _optuna_config(tmp_path, storage=storage, study_name="old", n_trials=3)
    old = optuna.create_study(storage=storage, study_name="old", direction="maximize")
    distribution = optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)
    old.add_trial(
        optuna.trial.create_trial(
            params={"mlp__alpha": 1e-3},
            distributions={"mlp__alpha": distribution},
            value=0.5,
        )
    )
    with pytest.warns(UserWarning, match="mlp__alpha.*continued with its own names"):
        result = run(path, out=tmp_path / "run", progress=False, stdout=io.StringIO())
    trials = result.search.study_.trials
    assert len(trials) == 3
    assert all("mlp__alpha" in t.params for t in trials)
    best = json.loads((tmp_path / "run" / "best_params.json").read_text())
    assert "alpha" in best and "mlp__alpha" not in best
