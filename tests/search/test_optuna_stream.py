"""OptunaSearchCV's stream: trials asked as slots free, told as each one ends."""

from __future__ import annotations

import warnings

import pytest

optuna = pytest.importorskip("optuna")

import torchhpo.engine.pack as pack_module  # noqa: E402
from torchhpo import MLPClassifier, OptunaSearchCV  # noqa: E402

Categorical = optuna.distributions.CategoricalDistribution
Float = optuna.distributions.FloatDistribution

SPACE = {
    "alpha": Float(1e-5, 1e-1, log=True),
    "learning_rate_init": Float(1e-5, 1e-1, log=True),
    "activation": Categorical(["relu", "tanh"]),
    "solver": Categorical(["adam", "sgd"]),
}


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture
def events(monkeypatch):
    """Record the study's asks and tells, in order, by trial number."""
    log = []
    ask, tell = optuna.study.Study.ask, optuna.study.Study.tell

    def asking(self, *args, **kwargs):
        trial = ask(self, *args, **kwargs)
        log.append(("ask", trial.number))
        return trial

    def telling(self, trial, *args, **kwargs):
        frozen = tell(self, trial, *args, **kwargs)
        log.append(("tell", frozen.number))
        return frozen

    monkeypatch.setattr(optuna.study.Study, "ask", asking)
    monkeypatch.setattr(optuna.study.Study, "tell", telling)
    return log


@pytest.fixture
def packs(monkeypatch):
    """Every pack trained: its capacity, models and occupancy counters."""
    seen = []
    train = pack_module.Pack.train

    def recording(self, *args, **kwargs):
        out = train(self, *args, **kwargs)
        seen.append(self)
        return out

    monkeypatch.setattr(pack_module.Pack, "train", recording)
    return seen


def _search(n_trials=12, **kwargs):
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    return OptunaSearchCV(
        MLPClassifier(hidden_layer_sizes=(8,), random_state=0),
        SPACE,
        cv=3,
        n_trials=n_trials,
        study=study,
        max_iter=15,
        max_pack_size=6,  # two trials of three folds at a time per pack
        progress=False,
        **kwargs,
    )


def _asked_while_an_older_trial_runs(events) -> bool:
    """Whether a trial was asked after a tell while a trial asked before that
    tell still ran: batches never do that (a batch is asked when all are told)."""
    running: set[int] = set()
    asked_before_last_tell: set[int] = set()
    for kind, number in events:
        if kind == "tell":
            running.discard(number)
            asked_before_last_tell = set(running)
        else:
            if running & asked_before_last_tell:
                return True
            running.add(number)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("enable_pruning", [False, True])
def test_trials_are_asked_as_slots_free_and_told_as_they_end(
    digits, events, packs, enable_pruning
):
    X, y = digits
    search = _search(enable_pruning=enable_pruning).fit(X, y)
    assert len(search.trials_) == 12
    assert _asked_while_an_older_trial_runs(events)
    # Every trial was told once, and no trial was told before it was asked.
    told = [n for kind, n in events if kind == "tell"]
    assert sorted(told) == list(range(12))
    for kind, number in events:
        if kind == "tell":
            assert ("ask", number) in events[: events.index((kind, number))]
    # Trials entered packs already training (the refit is a pack of its own).
    streamed = [p for p in packs if p.feed is not None]
    assert sum(len(p.tasks) for p in streamed) == 12 * 3
    assert any(len(p.tasks) > p.capacity for p in streamed)


@pytest.mark.slow
def test_batches_when_asked_for(digits, events):
    X, y = digits
    _search(trials_per_batch=3).fit(X, y)
    assert not _asked_while_an_older_trial_runs(events)


def test_pruned_trials_free_their_slots_for_new_ones(digits, packs):
    X, y = digits
    search = _search(n_trials=16, enable_pruning=True).fit(X, y)
    pruned = [t for t in search.trials_ if t.state.name == "PRUNED"]
    assert pruned
    streamed = [p for p in packs if p.feed is not None]
    live = sum(p.live_epochs for p in streamed)
    slots = sum(p.slot_epochs for p in streamed)
    # Slots stay full while trials are left to ask: only the last trials' tail
    # leaves slots empty.
    assert live / slots > 0.75
