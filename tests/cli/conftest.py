"""Tiny configs and one shared in-process run for the command-line tests."""

import copy
import io
from pathlib import Path

import pytest
import yaml

from torchhpo.cli import run

#: A config small enough for a 2-core CPU: iris, 4 candidates x 2 folds.
TINY = {
    "dataset": {"name": "iris"},
    "preprocessing": "standardize",
    "estimator": {
        "class": "MLPClassifier",
        "params": {"random_state": 0, "max_iter": 400, "learning_rate_init": 0.01},
    },
    "search": {
        "kind": "grid",
        "space": {
            "hidden_layer_sizes": [[8], [6, 4]],
            "activation": ["relu", "tanh"],
        },
        "cv": 2,
        "scoring": "accuracy",
    },
}


def tiny_config(**sections) -> dict:
    """Return a copy of :data:`TINY` with top-level sections replaced."""
    config = copy.deepcopy(TINY)
    config.update(copy.deepcopy(sections))
    return config


def write_config(path: Path, config: dict) -> Path:
    """Write ``config`` as YAML to ``path``; return the path."""
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_config_path(tmp_path_factory) -> Path:
    return write_config(tmp_path_factory.mktemp("configs") / "tiny.yaml", TINY)


@pytest.fixture(scope="session")
def iris_run(tiny_config_path, tmp_path_factory):
    """The tiny config, run in-process (its fitted search stays in memory)."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    stdout = io.StringIO()
    result = run(tiny_config_path, out=out, progress=False, stdout=stdout)
    result.stdout = stdout.getvalue()
    return result
