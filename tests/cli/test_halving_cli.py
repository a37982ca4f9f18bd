"""search.kind: halving_grid / halving_random from a config: checks and a run."""

import io

import numpy as np
import pytest

from torchhpo.cli import ConfigError, load_config, run
from torchhpo.cli._schema import Distribution

from .conftest import tiny_config, write_config
from .test_config import CONFIGS


def test_seed_halving_config_is_the_issues_search():
    config = load_config(CONFIGS / "seed_halving.yaml")
    assert config.kind == "halving_random"
    assert config.halving == {
        "factor": 3,
        "resource": "max_iter",
        "max_resources": 200,
        "min_resources": "exhaust",
        "aggressive_elimination": False,
        "n_candidates": 100,
    }
    assert config.space["alpha"] == Distribution("loguniform", 1e-5, 1e-1)
    assert config.space["learning_rate_init"] == Distribution("loguniform", 1e-4, 1e-1)


def _halving(**search):
    base = {
        "kind": "halving_grid",
        "space": {"alpha": [1e-4, 1e-3, 1e-2], "activation": ["relu", "tanh"]},
        "cv": 2,
        "scoring": "accuracy",
        "resource": "max_iter",
        "max_resources": 30,
        "min_resources": 10,
    }
    base.update(search)
    return tiny_config(search={k: v for k, v in base.items() if v is not None})


ERRORS = [
    (dict(factor=1), "search.factor", "expected a number > 1"),
    (dict(factor="big"), "search.factor", "expected a number > 1"),
    (dict(resource="max_itr"), "search.resource", "did you mean 'max_iter'"),
    (dict(max_resources=None), "search.max_resources", "expected an integer"),
    (dict(min_resources="most"), "search.min_resources", "exhaust or smallest"),
    (dict(n_candidates=5), "search.n_candidates", "only used by kind: halving_random"),
    (dict(n_iter=5), "search.n_iter", "only used by kind: random"),
    (
        dict(aggressive_elimination="yes"),
        "search.aggressive_elimination",
        "expected true or false",
    ),
    (
        dict(space={"max_iter": [5, 10]}),
        "search.space.max_iter",
        "is the halving resource",
    ),
    (
        dict(kind="grid", factor=3, resource=None, max_resources=None),
        "search.factor",
        "only used by kind: halving_grid or halving_random",
    ),
    (
        dict(space={"alpha": {"loguniform": [1e-5, 1e-1]}}),
        "search.space.alpha",
        "needs search.kind: random or halving_random",
    ),
]


@pytest.mark.parametrize("search, key, message", ERRORS)
def test_halving_config_errors_name_the_key(tmp_path, search, key, message):
    path = write_config(tmp_path / "c.yaml", _halving(**search))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert error.value.key == key
    assert message in str(error.value)


@pytest.mark.slow
def test_halving_run_shows_the_rungs(tmp_path):
    raw = _halving()
    path = write_config(tmp_path / "h.yaml", raw)
    stdout = io.StringIO()
    result = run(path, out=tmp_path / "run", progress=False, stdout=stdout)
    text = stdout.getvalue()
    search = result.search
    assert search.n_resources_ == [10, 30]
    assert search.n_candidates_ == [6, 2]
    assert f"resources {search.n_resources_}, candidates {search.n_candidates_}" in (
        text
    )
    # The leaderboard lists the last iteration's candidates first.
    rows = [line.split() for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert [row[6] for row in rows[:2]] == ["1", "1"]  # rank, mean ± std, fit s, iter
    assert (tmp_path / "run" / "plots" / "rungs.png").stat().st_size > 10_000
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.halving == load_config(path).halving
    assert np.isfinite(search.best_score_)
