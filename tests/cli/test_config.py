"""Config checks: every kind of error names its key and says what was expected,
before any data is loaded or model trained."""

from pathlib import Path

import pytest

from torchhpo.cli import ConfigError, load_config, main
from torchhpo.cli._schema import Distribution
from torchhpo.configs import FOLDER

from .conftest import tiny_config, write_config

CONFIGS = FOLDER  # the configs shipped in the package


def test_seed_grid_config_is_the_seeds_grid():
    config = load_config(CONFIGS / "seed_grid.yaml")
    assert config.dataset.name == "digits"
    assert config.preprocessing == "standardize"
    assert config.estimator == "MLPClassifier"
    assert config.params == {"random_state": 0}
    assert config.kind == "grid"
    assert config.cv == 5
    assert config.space == {
        "hidden_layer_sizes": [(50, 50), (100,)],
        "activation": ["relu", "tanh"],
        "solver": ["adam", "sgd"],
    }


def test_seed_random_config_draws_alpha_log_uniformly():
    config = load_config(CONFIGS / "seed_random.yaml")
    assert config.kind == "random"
    assert config.n_iter == 10
    assert config.space["alpha"] == Distribution("loguniform", 1e-5, 1e-1)
    draws = config.space["alpha"].rv().rvs(size=200, random_state=0)
    assert draws.min() >= 1e-5
    assert draws.max() <= 1e-1


def test_every_shipped_config_loads():
    paths = sorted(CONFIGS.glob("*.yaml"))
    assert len(paths) >= 3
    for path in paths:
        load_config(path)


def test_numbers_in_e_notation_are_floats(tmp_path):
    # YAML 1.1 would read 1e-4 as a string; configs write penalties that way.
    space = {"alpha": [1e-4, 1e-3]}
    raw = tiny_config(search={**tiny_config()["search"], "space": space})
    path = write_config(tmp_path / "c.yaml", raw)
    path.write_text(path.read_text().replace("0.0001", "1e-4").replace("0.001", "1e-3"))
    assert "1e-4" in path.read_text()
    assert load_config(path).space["alpha"] == [1e-4, 1e-3]


def test_config_as_run_loads_back_to_the_same_config(tmp_path):
    raw = tiny_config()
    raw["search"] = {
        "kind": "random",
        "space": {"alpha": {"loguniform": [1e-5, 1e-1]}, "hidden_layer_sizes": [[3]]},
        "n_iter": 3,
        "random_state": 1,
    }
    config = load_config(write_config(tmp_path / "c.yaml", raw))
    again = load_config(write_config(tmp_path / "again.yaml", config.to_config()))
    assert again.to_config() == config.to_config()
    assert again.space == config.space


def _search(**changes):
    return {**tiny_config()["search"], **changes}


def _space(**changes):
    return _search(space={**tiny_config()["search"]["space"], **changes})


# (config sections to replace, key named in the message, words of the message)
ERRORS = {
    "unknown top-level key": (
        {"serach": {}},
        "serach",
        "unknown key (did you mean 'search'?); expected one of",
    ),
    "missing section": ({"search": None}, "search", "expected a mapping"),
    "unknown search key": (
        {"search": _search(n_iters=3)},
        "search.n_iters",
        "unknown key (did you mean 'n_iter'?)",
    ),
    "unknown estimator parameter": (
        {"estimator": {"class": "MLPClassifier", "params": {"hiden_layer_sizes": [3]}}},
        "estimator.params.hiden_layer_sizes",
        "did you mean 'hidden_layer_sizes'?",
    ),
    "unknown estimator": (
        {"estimator": {"class": "MLPClasifier"}},
        "estimator.class",
        "expected one of MLPClassifier, MLPRegressor",
    ),
    "unknown searched parameter": (
        {"search": _space(learning_rate_int=[0.1])},
        "search.space.learning_rate_int",
        "did you mean 'learning_rate_init'?",
    ),
    "invalid parameter value": (
        {"search": _space(activation=["relu", "tanhh"])},
        "search.space.activation[1]",
        "invalid value 'tanhh'",
    ),
    "invalid layer sizes": (
        {"search": _space(hidden_layer_sizes=[[8], [0]])},
        "search.space.hidden_layer_sizes[1]",
        "hidden_layer_sizes must be > 0",
    ),
    "invalid fixed value": (
        {"estimator": {"class": "MLPClassifier", "params": {"max_iter": 0}}},
        "estimator.params.max_iter",
        "The 'max_iter' parameter of MLPClassifier must be",
    ),
    "values not a list": (
        {"search": _space(solver="adam")},
        "search.space.solver",
        "expected a non-empty list of values, got 'adam'",
    ),
    "fixed and searched": (
        {
            "estimator": {"class": "MLPClassifier", "params": {"activation": "relu"}},
        },
        "search.space.activation",
        "also fixed in estimator.params.activation",
    ),
    "unknown distribution": (
        {
            "search": _search(
                kind="random", space={"alpha": {"logunifrom": [1e-5, 0.1]}}, n_iter=2
            )
        },
        "search.space.alpha",
        "unknown distribution 'logunifrom' (did you mean 'loguniform'?)",
    ),
    "distribution in a grid": (
        {"search": _space(alpha={"loguniform": [1e-5, 1e-1]})},
        "search.space.alpha",
        "needs search.kind: random or halving_random; kind: grid takes a list",
    ),
    "log-uniform from zero": (
        {
            "search": _search(
                kind="random", space={"alpha": {"loguniform": [0, 0.1]}}, n_iter=2
            )
        },
        "search.space.alpha.loguniform",
        "expected [low, high] with 0 < low < high",
    ),
    "the seed's randint": (
        {
            "search": _search(
                kind="random", space={"alpha": {"randint": [0.0001, 0.001]}}, n_iter=2
            )
        },
        "search.space.alpha.randint",
        "[low, high] integers with low < high",
    ),
    "distribution drawing invalid values": (
        {
            "search": _search(
                kind="random", space={"batch_size": {"uniform": [10, 50]}}, n_iter=2
            )
        },
        "search.space.batch_size",
        "{uniform: [10, 50]} draws values batch_size cannot take",
    ),
    "n_iter in a grid": (
        {"search": _search(n_iter=3)},
        "search.n_iter",
        "only used by kind: random",
    ),
    "too few folds": ({"search": _search(cv=1)}, "search.cv", "integer >= 2, got 1"),
    "unknown scorer": (
        {"search": _search(scoring="acuracy")},
        "search.scoring",
        "unknown scorer 'acuracy' (did you mean 'accuracy'?)",
    ),
    "unknown dataset": (
        {"dataset": {"name": "digit"}},
        "dataset.name",
        "unknown value 'digit' (did you mean 'digits'?); expected one of digits, "
        "iris, wine, breast_cancer, diabetes",
    ),
    "two data sources": (
        {"dataset": {"name": "iris", "file": "x.csv"}},
        "dataset",
        "expected exactly one of 'name'",
    ),
    "missing data file": (
        {"dataset": {"file": "no_such.csv", "target": "label"}},
        "dataset.file",
        "file not found: 'no_such.csv'",
    ),
    "data file of another kind": (
        {"dataset": {"file": "data.xlsx", "target": "label"}},
        "dataset.file",
        "is not a .csv, .parquet or .npy file",
    ),
    "unknown preprocessing": (
        {"preprocessing": "scale"},
        "preprocessing",
        "expected one of auto, standardize, none",
    ),
    "unknown generator option": (
        {"dataset": {"synthetic": "make_classification", "options": {"n_sample": 9}}},
        "dataset.options.n_sample",
        "did you mean 'n_samples'?",
    ),
}


@pytest.mark.parametrize("case", list(ERRORS), ids=list(ERRORS))
def test_config_errors_name_the_key_and_what_was_expected(tmp_path, case):
    sections, key, words = ERRORS[case]
    path = write_config(tmp_path / "bad.yaml", tiny_config(**sections))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"{path}: {key}: ")


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")


def test_yaml_syntax_error_is_reported_with_its_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("dataset: iris\nsearch: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML.*line"):
        load_config(path)


def test_yaml_is_read_safely(tmp_path):
    path = tmp_path / "unsafe.yaml"
    path.write_text("dataset: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_command_line_prints_one_line_and_exits_2_before_any_work(tmp_path, capsys):
    bad = tiny_config(search=_space(activation=["relu", "tanhh"]))
    path = write_config(tmp_path / "bad.yaml", bad)
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("torchhpo: error: ")
    assert "search.space.activation[1]: invalid value 'tanhh'" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert "Traceback" not in captured.err
    assert not out.exists()


def test_unusable_device_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    path = write_config(tmp_path / "c.yaml", tiny_config())
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--device", "cuda"]) == 2
    assert "--device: The 'device' parameter is 'cuda'" in capsys.readouterr().err
    assert not out.exists()


def test_readme_config_example_is_seed_random(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(
        encoding="utf-8"
    )
    section = readme.split("## Command line", 1)[1]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "readme.yaml"
    path.write_text(example, encoding="utf-8")
    shown = load_config(path).to_config()
    shipped = load_config(CONFIGS / "seed_random.yaml").to_config()
    shipped.pop("description")
    assert shown == shipped
