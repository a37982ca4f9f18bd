"""``torchhpo run --checkpoint JOURNAL [--resume]``: journal, resume, refusals."""

import json

import pytest

import torchhpo.search._scheduler as scheduler_module
from torchhpo.cli import main
from torchhpo.cli._runs import read_cv_results

from .conftest import tiny_config, write_config

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def run_args(config, out, *extra):
    return [
        "run",
        str(config),
        "--out",
        str(out),
        "--no-progress",
        "--no-plots",
        *extra,
    ]


@pytest.mark.slow
def test_resume_reads_the_journal_and_trains_nothing_more(
    tiny_config_path, tmp_path, monkeypatch, capsys
):
    journal = tmp_path / "tiny.journal"
    out = tmp_path / "run"
    assert main(run_args(tiny_config_path, out, "--checkpoint", str(journal))) == 0
    lines = journal.read_text().splitlines()
    assert len(lines) == 1 + 4 * 2  # header + 4 candidates x 2 folds
    first = _scores(out / "cv_results.csv")

    # The journal exists: a plain rerun is refused rather than silently resumed.
    again = run_args(tiny_config_path, out, "--checkpoint", str(journal), "--force")
    assert main(again) == 2
    assert "pass --resume" in capsys.readouterr().err

    def no_training(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(scheduler_module, "train_models", no_training)
    resumed = run_args(
        tiny_config_path, out, "--checkpoint", str(journal), "--resume", "--force"
    )
    assert main(resumed) == 0
    assert _scores(out / "cv_results.csv") == first


def test_resume_needs_an_existing_journal(tiny_config_path, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(run_args(tiny_config_path, out, "--resume")) == 2
    assert "--resume needs --checkpoint" in capsys.readouterr().err
    missing = tmp_path / "missing.journal"
    assert (
        main(run_args(tiny_config_path, out, "--checkpoint", str(missing), "--resume"))
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_journal_of_another_config_is_refused(tiny_config_path, tmp_path, capsys):
    journal = tmp_path / "tiny.journal"
    assert (
        main(run_args(tiny_config_path, tmp_path / "a", "--checkpoint", str(journal)))
        == 0
    )
    other = write_config(
        tmp_path / "other.yaml",
        tiny_config(dataset={"name": "wine"}),
    )
    before = journal.read_bytes()
    args = run_args(other, tmp_path / "b", "--checkpoint", str(journal), "--resume")
    assert main(args) == 2
    assert "another search" in capsys.readouterr().err
    assert journal.read_bytes() == before


def _scores(path):
    """mean_test_score and rank_test_score cells of a run's cv_results.csv."""
    header, rows = read_cv_results(path)
    columns = [header.index("mean_test_score"), header.index("rank_test_score")]
    return [[row[j] for j in columns] for row in rows]


@pytest.mark.slow
def test_journal_header_names_the_format(tiny_config_path, tmp_path):
    journal = tmp_path / "tiny.journal"
    main(run_args(tiny_config_path, tmp_path / "run", "--checkpoint", str(journal)))
    header = json.loads(journal.read_text().splitlines()[0])
    assert header["format"] == "torchhpo-journal"
    assert set(header["fingerprint"]) == {"data", "estimator", "space", "cv"}
