"""Command-line overrides: ``torchhpo run CONFIG key.path=value ...``."""

import pytest
import yaml

from torchhpo.cli import ConfigError, load_config, main
from torchhpo.cli._schema import Distribution

from .conftest import tiny_config, write_config

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def config_path(tmp_path):
    return write_config(tmp_path / "tiny.yaml", tiny_config())


def test_values_are_yaml_and_checked_like_the_file(config_path):
    config = load_config(
        config_path,
        [
            "search.cv=3",
            "estimator.params.max_iter=50",
            "estimator.params.learning_rate_init=5e-3",
            "search.kind=random",
            "search.n_iter=2",
            "search.space.alpha={loguniform: [1e-5, 1e-2]}",
        ],
    )
    assert config.cv == 3
    assert config.params["max_iter"] == 50
    assert config.params["learning_rate_init"] == 0.005
    assert config.kind == "random" and config.n_iter == 2
    assert config.space["alpha"] == Distribution("loguniform", 1e-5, 1e-2)
    assert config.overrides[0] == "search.cv=3"


def test_missing_sections_are_created_and_dataset_names_become_mappings(config_path):
    config = load_config(config_path, ["description=tuned", "dataset.name=wine"])
    assert config.description == "tuned" and config.dataset.name == "wine"
    config = load_config(config_path, ["dataset=digits"])
    assert config.dataset.name == "digits"


def test_relative_data_file_is_read_from_the_current_folder(
    config_path, tmp_path, monkeypatch
):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.csv").write_text("a,b\n1,0\n2,1\n")
    monkeypatch.chdir(tmp_path / "sub")
    config = load_config(
        config_path, ["dataset={file: x}", "dataset.file=d.csv", "dataset.target=b"]
    )
    assert config.dataset.file == tmp_path / "sub" / "d.csv"


@pytest.mark.parametrize(
    "override, key, message",
    [
        ("search.cv=one", "search.cv", "expected an integer >= 2, got 'one'"),
        ("search.cvv=3", "search.cvv", "unknown key (did you mean 'cv'?)"),
        ("search.cv", "", "override 'search.cv': expected KEY.PATH=VALUE"),
        ("search..cv=3", "", "expected KEY.PATH=VALUE"),
        ("search.kind.x=1", "search.kind.x", "search.kind is 'grid', not a mapping"),
        ("search.cv=[1", "search.cv", "the override value '[1' is not valid YAML"),
        (
            "search.space.alpha={loguniform: [1e-5, 1e-2]}",
            "search.space.alpha",
            "needs search.kind: random",
        ),
        (
            "estimator.params.max_iter=0",
            "estimator.params.max_iter",
            "invalid value 0",
        ),
    ],
)
def test_errors_name_the_key(config_path, override, key, message):
    with pytest.raises(ConfigError) as info:
        load_config(config_path, [override])
    assert info.value.key == key
    assert message in str(info.value)


def test_command_line_records_overrides(config_path, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["run", str(config_path), "search.cv=3", "--out", str(out)]
    argv += ["--no-progress", "--no-plots", "estimator.params.max_iter=40"]
    assert main(argv) == 0
    assert "3 folds" in capsys.readouterr().out
    text = (out / "config.yaml").read_text()
    assert "#   search.cv=3\n#   estimator.params.max_iter=40\n" in text
    written = yaml.safe_load(text)
    assert written["search"]["cv"] == 3
    assert written["estimator"]["params"]["max_iter"] == 40
    # The recorded config reruns as it ran.
    assert load_config(out / "config.yaml").cv == 3


def test_command_line_error_is_one_line(config_path, capsys):
    assert main(["run", str(config_path), "search.cv=1"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("torchhpo: error: ")
        and "search.cv: expected an integer >= 2" in err
    )
