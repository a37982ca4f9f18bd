"""The command line draws one progress bar per run, for every search kind,
moving forward and ending at 100 % (Optuna with pruning included)."""

import pytest

import torchhpo.search._progress as progress_module
from torchhpo.cli import run

from .conftest import tiny_config, write_config

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


class Bar:
    made: list = []

    def __init__(self, total, disable, desc, unit, leave, **options):
        self.total, self.n, self.moves, self.closed = total, 0, [], False
        self.disable = disable
        Bar.made.append(self)

    def update(self, n):
        self.n += n
        self.moves.append(n)

    def set_postfix_str(self, text, refresh=True):
        pass

    def close(self):
        self.closed = True


SEARCHES = {
    "halving": {
        "kind": "halving_grid",
        "space": {"alpha": [1e-4, 1e-3, 1e-2, 1e-1]},
        "factor": 2,
        "resource": "max_iter",
        "min_resources": 5,
        "max_resources": 20,
    },
    "optuna_pruning": {
        "kind": "optuna",
        "space": {"learning_rate_init": {"loguniform": [1e-6, 1e-1]}},
        "n_trials": 8,
        "pruner": "median",
        "max_iter": 10,
        "random_state": 0,
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(SEARCHES))
def test_one_bar_per_run(tmp_path, monkeypatch, kind):
    if kind.startswith("optuna"):
        pytest.importorskip("optuna")
    Bar.made = []
    monkeypatch.setattr(progress_module, "tqdm", Bar)
    config = tiny_config()
    config["estimator"]["params"]["max_iter"] = 20
    del config["estimator"]["params"]["learning_rate_init"]
    config["search"] = {"cv": 2, **SEARCHES[kind]}
    path = write_config(tmp_path / "c.yaml", config)
    run(path, out=tmp_path / "run", progress=True, plots=False)
    (bar,) = Bar.made
    assert bar.closed and all(n > 0 for n in bar.moves)
    assert bar.n == bar.total
