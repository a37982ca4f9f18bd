"""``torchhpo run --quiet``: the run folder's path, and nothing else."""

import pytest

from torchhpo.cli import main

from .conftest import tiny_config, write_config


def test_quiet_prints_only_the_run_folder(tmp_path, capsys):
    config = tiny_config()
    config["estimator"]["params"]["max_iter"] = 3  # ConvergenceWarnings
    path = write_config(tmp_path / "q.yaml", config)
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--no-plots", "--quiet"]) == 0
    printed = capsys.readouterr()
    assert printed.out == f"{out}\n"
    assert printed.err == ""
    assert (out / "cv_results.csv").is_file()
    # Without --quiet the same run warns and prints its leaderboard.
    main(["run", str(path), "--out", str(out), "--no-plots", "--force"])
    printed = capsys.readouterr()
    assert "ConvergenceWarning" in printed.err
    assert "rank" in printed.out.lower()


@pytest.mark.slow
def test_quiet_optuna_run_prints_no_log_lines(tmp_path, capsys):
    import pytest

    pytest.importorskip("optuna")
    config = tiny_config()
    config["search"] = {
        "kind": "optuna",
        "space": {"alpha": {"loguniform": [1e-5, 1e-1]}},
        "n_trials": 3,
        "cv": 2,
        "random_state": 0,
    }
    path = write_config(tmp_path / "o.yaml", config)
    out = tmp_path / "run"
    assert main(["run", str(path), "--out", str(out), "--no-plots", "-q"]) == 0
    printed = capsys.readouterr()
    assert printed.out == f"{out}\n" and printed.err == ""
