"""The config's search options are checked by the searches' own declarations.

Each value the config refuses (naming the key) is one the search class itself
refuses at ``fit`` (scikit-learn's ``InvalidParameterError``), side by side.
"""

from pathlib import Path

import pytest
from sklearn.utils._param_validation import InvalidParameterError

from torchhpo import MLPClassifier
from torchhpo.cli import ConfigError, load_config
from torchhpo.search import HalvingGridSearchCV, RandomizedSearchCV

from .conftest import tiny_config, write_config

CLI = Path(__file__).resolve().parents[2] / "torchhpo" / "cli"


def _search(**options) -> dict:
    search = {
        "space": {"activation": ["relu", "tanh"]},
        "cv": 2,
        **options,
    }
    return search


CASES = [
    (RandomizedSearchCV, {"kind": "random"}, "n_iter", 0),
    (RandomizedSearchCV, {"kind": "random"}, "random_state", 2**33),
    (RandomizedSearchCV, {"kind": "random"}, "random_state", 1.5),
    (HalvingGridSearchCV, {"kind": "halving_grid"}, "min_resources", 0),
    (HalvingGridSearchCV, {"kind": "halving_grid"}, "max_resources", "all"),
    (HalvingGridSearchCV, {"kind": "halving_grid"}, "aggressive_elimination", 1),
]


@pytest.mark.parametrize("search, kind, name, value", CASES)
def test_refused_as_the_search_refuses_it(tmp_path, search, kind, name, value):
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        search(MLPClassifier(), {"alpha": [1e-4]}, **{name: value})._validate_params()
    config = tiny_config(search=_search(**kind, **{name: value}))
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path / "c.yaml", config))
    assert caught.value.key == f"search.{name}"
    assert "expected" in caught.value.message


@pytest.mark.parametrize(
    "name, value", [("n_trials", -1), ("max_iter", 0), ("timeout", 0)]
)
def test_optuna_options_refused_as_optuna_search_refuses_them(tmp_path, name, value):
    pytest.importorskip("optuna")
    from torchhpo import OptunaSearchCV

    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter"):
        OptunaSearchCV(MLPClassifier(), {}, **{name: value})._validate_params()
    config = tiny_config(search=_search(kind="optuna", **{name: value}))
    with pytest.raises(ConfigError, match=rf"search\.{name}: expected"):
        load_config(write_config(tmp_path / "c.yaml", config))


def test_yaml_true_is_not_an_integer(tmp_path):
    config = tiny_config(search=_search(kind="random", n_iter=True))
    with pytest.raises(ConfigError, match=r"search\.n_iter: expected an integer >= 1"):
        load_config(write_config(tmp_path / "c.yaml", config))


def test_config_modules_are_small():
    """Schema, reading and checks are their own modules, each under 500 lines."""
    names = ["_config", "_schema", "_yaml", "_check_base", "_check_data"]
    for name in [*names, "_check_search"]:
        lines = (CLI / f"{name}.py").read_text(encoding="utf-8").count("\n")
        assert lines < 500, (name, lines)


def test_a_repeated_column_is_named(tmp_path):
    """``dataset.drop`` naming a column twice says which one."""
    config = tiny_config(dataset={"name": "iris", "drop": ["a", "b", "a"]})
    with pytest.raises(ConfigError, match=r"dataset\.drop: repeats a\."):
        load_config(write_config(tmp_path / "c.yaml", config))
