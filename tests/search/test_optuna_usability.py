"""OptunaSearchCV as a user meets it: quiet by default, a checkpoint that resumes."""

from __future__ import annotations

import logging
import warnings

import pytest

optuna = pytest.importorskip("optuna")

from torchhpo import MLPClassifier, OptunaSearchCV  # noqa: E402

SPACE = {"alpha": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)}


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _search(**kwargs):
    return OptunaSearchCV(
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0),
        SPACE,
        cv=2,
        random_state=0,
        device="cpu",
        progress=False,
        **kwargs,
    )


def test_no_info_line_per_trial_unless_verbose(digits, caplog):
    X, y = digits
    optuna.logging.set_verbosity(optuna.logging.INFO)
    optuna.logging.enable_propagation()
    try:
        with caplog.at_level(logging.INFO):
            _search(n_trials=4).fit(X, y)
        assert not [r for r in caplog.records if "Trial" in r.getMessage()]
        # Optuna's own verbosity is the user's again after fit.
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
        caplog.clear()
        with caplog.at_level(logging.INFO):
            _search(n_trials=4, verbose=1).fit(X, y)
        finished = {r.message for r in caplog.records if "finished with" in r.message}
        assert len(finished) == 4
    finally:
        optuna.logging.disable_propagation()
        optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_checkpoint_resumes_the_study(digits, tmp_path):
    X, y = digits
    journal = tmp_path / "search.journal"
    first = _search(n_trials=3, checkpoint=journal).fit(X, y)
    assert journal.is_file() and len(first.trials_) == 3
    first_params = [t.params for t in first.trials_]
    # A trial the kill left running is failed; the rest of n_trials runs.
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    study = optuna.load_study(study_name="torchhpo", storage=storage)
    study.ask()
    resumed = _search(n_trials=5, checkpoint=journal).fit(X, y)
    states = [t.state.name for t in resumed.trials_]
    assert states[:3] == ["COMPLETE"] * 3
    assert states[3] == "FAIL"
    assert states[4:] == ["COMPLETE"] * 2
    assert [t.params for t in resumed.trials_[:3]] == first_params
    assert resumed.best_score_ == max(
        t.value for t in resumed.trials_ if t.state.name == "COMPLETE"
    )
