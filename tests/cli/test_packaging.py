"""An install that works outside a clone: bundled configs and data, ``torchhpo
examples``, the package metadata, and the README's install and predict lines."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import tomllib
from numpy.testing import assert_array_equal
from sklearn.datasets import load_digits

import torchhpo.configs as bundled
from torchhpo.cli import ConfigError, load_config, main, predict, run

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
README = (ROOT / "README.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def test_bundled_configs_are_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert {"seed_grid", "seed_random", "penguins_like"} <= set(bundled.names())
    for name in ("seed_grid", "seed_grid.yaml", "configs/seed_grid.yaml"):
        config = load_config(name)
        assert config.source == bundled.FOLDER / "seed_grid.yaml"
        assert config.dataset.name == "digits"
    with pytest.raises(ConfigError, match=r"did you mean 'seed_grid'\?"):
        load_config("seed_gird")
    # A file of that name wins over the bundled one.
    (tmp_path / "seed_grid.yaml").write_text(
        bundled.find("seed_grid").read_text().replace("cv: 5", "cv: 3")
    )
    assert load_config("seed_grid.yaml").cv == 3


def test_every_bundled_file_is_package_data():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["torchhpo.configs"]
    shipped = {
        str(p.relative_to(bundled.FOLDER))
        for p in bundled.FOLDER.rglob("*")
        if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
    }
    covered = {
        str(p.relative_to(bundled.FOLDER))
        for pattern in patterns
        for p in bundled.FOLDER.glob(pattern)
    }
    assert shipped and shipped <= covered


def test_examples_command_copies_configs_and_data(tmp_path, capsys):
    out = tmp_path / "ex"
    assert main(["examples", str(out)]) == 0
    assert "seed_grid.yaml" in capsys.readouterr().out
    for name in bundled.names():
        assert (out / f"{name}.yaml").read_bytes() == bundled.find(name).read_bytes()
    for name in ("penguins_like.csv", "new_digits.csv", "new_birds.csv"):
        assert (out / "data" / name).is_file()
    # The copied tabular config reads its copied data file.
    config = load_config(out / "penguins_like.yaml")
    assert config.dataset.file == (out / "data" / "penguins_like.csv").resolve()
    # Not overwritten without --force.
    assert main(["examples", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["examples", str(out), "--force"]) == 0


def test_license_and_metadata():
    project = PYPROJECT["project"]
    assert project["license"] == "BSD-3-Clause"  # an SPDX expression
    assert project["license-files"] == ["LICENSE"]
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text()
    assert {"Homepage", "Source"} <= set(project["urls"])
    assert any(
        c.startswith("Programming Language :: Python :: 3")
        for c in project["classifiers"]
    )
    # PEP 639: no license classifier next to an SPDX expression.
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]


def _code_lines() -> list[str]:
    """The lines of the README's code blocks."""
    blocks = README.split("```")[1::2]
    return [line.strip() for block in blocks for line in block.splitlines()]


def test_readme_installs_what_exists():
    lines = _code_lines()
    # No index serves the name (yet): no bare "pip install torchhpo".
    assert not [line for line in lines if re.match(r"pip install torchhpo\b", line)]
    assert 'pip install -e ".[test]"' in lines
    # A platform wheel (abi3): it carries the compiled kernels where they built.
    assert "pip install dist/torchhpo-0.1.0-*.whl" in [
        line.split("  ")[0] for line in lines
    ]
    assert 'pip install "torchhpo @ git+https://github.com/OWNER/torchhpo"' in lines
    assert "`OWNER/torchhpo` is a placeholder" in README


def test_readme_predict_examples_use_files_that_exist():
    commands = [line for line in _code_lines() if line.startswith("torchhpo predict")]
    assert commands
    for command in commands:
        data = Path(command.split()[3])
        assert data.parts[-2:-1] == ("data",), command  # as torchhpo examples copies
        assert (bundled.FOLDER / "data" / data.name).is_file(), command


def test_new_digits_match_the_digits_columns_and_predict(tmp_path):
    """A model trained on digits predicts the shipped new_digits.csv by name."""
    new = pd.read_csv(bundled.FOLDER / "data" / "new_digits.csv")
    digits = load_digits()
    assert list(new.columns) == list(digits.feature_names)
    overrides = [
        "search.space={hidden_layer_sizes: [[8]]}",
        "search.cv=2",
        "estimator.params.max_iter=5",
    ]
    config = load_config("seed_grid", overrides)
    assert config.dataset.name == "digits"
    result = run(
        "seed_grid",
        out=tmp_path / "run",
        progress=False,
        plots=False,
        overrides=overrides,
    )
    written = predict(result.folder, bundled.FOLDER / "data" / "new_digits.csv",
                      out=tmp_path / "p.csv")  # fmt: skip
    expected = result.search.best_estimator_.predict(new.to_numpy(dtype=float))
    assert_array_equal(pd.read_csv(written)["prediction"], expected)


def test_new_birds_predict_with_the_penguins_model(tmp_path):
    overrides = ["search.n_iter=1", "search.cv=2", "estimator.params.max_iter=5"]
    result = run(
        "penguins_like",
        out=tmp_path / "run",
        progress=False,
        plots=False,
        overrides=overrides,
    )
    birds = bundled.FOLDER / "data" / "new_birds.csv"
    new = pd.read_csv(birds)
    assert list(new.columns) != result.dataset.feature_names  # another order
    written = predict(result.folder, birds, out=tmp_path / "p.csv")
    expected = result.search.best_estimator_.predict(
        new[result.dataset.feature_names].astype({"island": object, "sex": object})
    )
    assert list(pd.read_csv(written)["prediction"]) == list(expected)


@pytest.mark.slow
def test_wheel_ships_the_configs_and_license(tmp_path):
    source = tmp_path / "source"  # built in a copy: setuptools writes build/ there
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "build", "*.egg-info")
    shutil.copytree(ROOT / "torchhpo", source / "torchhpo", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(source)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {done.stderr[-300:]}")
    (wheel,) = tmp_path.glob("torchhpo-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "torchhpo/configs/seed_grid.yaml" in names
    assert "torchhpo/configs/data/new_digits.csv" in names
    assert any(n.endswith("licenses/LICENSE") for n in names)
