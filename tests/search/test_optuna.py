"""OptunaSearchCV side by side with optuna_integration.OptunaSearchCV.

Same inputs to both; the records (attributes, cv_results_ layout, trials_dataframe
columns, trial parameters, states) must agree. Skipped without Optuna.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

optuna = pytest.importorskip("optuna")
integration = pytest.importorskip("optuna_integration")

import torchhpo.search._scheduler as scheduler_module  # noqa: E402
from torchhpo import MLPClassifier, MLPRegressor, OptunaSearchCV  # noqa: E402
from torchhpo.search._optuna_pruning import TrialPruning  # noqa: E402

Categorical = optuna.distributions.CategoricalDistribution
Float = optuna.distributions.FloatDistribution
Int = optuna.distributions.IntDistribution

SPACE = {
    "alpha": Float(1e-5, 1e-1, log=True),
    "learning_rate_init": Float(1e-3, 1e-1, log=True),
    "activation": Categorical(["relu", "tanh"]),
    "solver": Categorical(["adam", "sgd"]),
}


@pytest.fixture(autouse=True)
def _quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _mlp(**params):
    return SklearnMLPClassifier(hidden_layer_sizes=(8,), max_iter=6, **params)


def _pair(estimator, space, X, y, **kwargs):
    """Fit torchhpo's and optuna_integration's search on the same inputs."""
    ours = OptunaSearchCV(estimator, space, progress=False, **kwargs).fit(X, y)
    ref_kwargs = {k: v for k, v in kwargs.items() if k != "trials_per_batch"}
    theirs = integration.OptunaSearchCV(estimator, space, **ref_kwargs).fit(X, y)
    return ours, theirs


@pytest.mark.parametrize("enable_pruning", [False, True])
def test_records_match_optuna_integration(digits, enable_pruning):
    X, y = digits
    ours, theirs = _pair(
        _mlp(),
        SPACE,
        X,
        y,
        cv=3,
        n_trials=5,
        random_state=0,
        enable_pruning=enable_pruning,
        max_iter=4,
        trials_per_batch=3,
    )
    # TPE's start-up trials are random: the same seed gives the same parameters.
    assert [t.params for t in ours.trials_] == [t.params for t in theirs.trials_]
    assert list(ours.cv_results_) == list(theirs.cv_results_)
    assert all(len(v) == 5 for v in ours.cv_results_.values())
    assert list(ours.trials_dataframe().columns) == list(
        theirs.trials_dataframe().columns
    )
    assert [t.state for t in ours.trials_] == [t.state for t in theirs.trials_]
    assert [len(t.intermediate_values) for t in ours.trials_] == [
        len(t.intermediate_values) for t in theirs.trials_
    ]
    for name in ("n_splits_", "n_trials_", "best_index_", "sample_indices_"):
        assert np.all(getattr(ours, name) == getattr(theirs, name)) or name == (
            "best_index_"
        )
    assert ours.best_trial_.number == ours.best_index_
    assert ours.best_params_ == ours.study_.best_params
    assert ours.best_score_ == ours.study_.best_value
    assert ours.user_attrs_ == {}
    assert type(ours.best_estimator_) is SklearnMLPClassifier
    assert ours.refit_time_ > 0
    assert ours.predict(X[:5]).shape == theirs.predict(X[:5]).shape
    assert ours.predict_proba(X[:5]).shape == (5, 10)
    assert ours.score(X, y) == ours.scorer_(ours.best_estimator_, X, y)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    for trial in ours.trials_:
        scores = [trial.user_attrs[f"split{i}_test_score"] for i in range(3)]
        assert trial.value == pytest.approx(np.mean(scores))


def test_enqueued_trials_keep_their_parameters(digits):
    X, y = digits
    enqueued = [
        {"alpha": 1e-3, "learning_rate_init": 0.01, "activation": a, "solver": s}
        for a in ("relu", "tanh")
        for s in ("adam", "sgd")
    ]
    studies = []
    for _ in range(2):
        study = optuna.create_study(direction="maximize")
        for params in enqueued:
            study.enqueue_trial(params)
        studies.append(study)
    ours, theirs = (
        OptunaSearchCV(
            _mlp(random_state=0),
            SPACE,
            cv=3,
            n_trials=4,
            study=studies[0],
            trials_per_batch=4,
            progress=False,
        ).fit(X, y),
        integration.OptunaSearchCV(
            _mlp(random_state=0), SPACE, cv=3, n_trials=4, study=studies[1]
        ).fit(X, y),
    )
    assert [t.params for t in ours.trials_] == enqueued
    assert [t.params for t in theirs.trials_] == enqueued
    ours_scores = np.array(ours.cv_results_["mean_test_score"])
    theirs_scores = np.array(theirs.cv_results_["mean_test_score"])
    assert np.abs(ours_scores - theirs_scores).max() < 0.25  # 6 epochs; not seeds


def test_grid_sampler_covers_the_grid_and_stops(digits):
    X, y = digits
    grid = {"activation": ["relu", "tanh"], "solver": ["adam", "sgd"]}
    space = {k: Categorical(v) for k, v in grid.items()}
    seen = []
    for cls, extra in ((OptunaSearchCV, {"progress": False}), (None, {})):
        study = optuna.create_study(
            direction="maximize", sampler=optuna.samplers.GridSampler(grid, seed=0)
        )
        make = cls or integration.OptunaSearchCV
        make(_mlp(), space, cv=3, n_trials=10, study=study, **extra).fit(X, y)
        seen.append(sorted(tuple(sorted(t.params.items())) for t in study.trials))
    assert seen[0] == seen[1]
    assert len(seen[0]) == 4


@pytest.mark.parametrize("error_score", [np.nan, 0.0])
def test_failing_trial_records_error_score(digits, error_score):
    X, y = digits
    space = {"alpha": Float(-1.0, 1.0)}
    records = []
    for cls in (OptunaSearchCV, integration.OptunaSearchCV):
        study = optuna.create_study(direction="maximize")
        study.enqueue_trial({"alpha": -0.5})  # invalid: every fit fails
        study.enqueue_trial({"alpha": 0.01})
        extra = {"progress": False} if cls is OptunaSearchCV else {}
        search = cls(
            _mlp(), space, cv=3, n_trials=2, study=study, error_score=error_score
        )
        search.set_params(**extra).fit(X, y)
        records.append(search)
    ours, theirs = records
    assert [t.state for t in ours.trials_] == [t.state for t in theirs.trials_]
    assert list(ours.trials_[0].user_attrs) == list(theirs.trials_[0].user_attrs)
    np.testing.assert_array_equal(
        ours.cv_results_["split0_test_score"][0],
        theirs.cv_results_["split0_test_score"][0],
    )
    assert np.isnan(ours.trials_[0].user_attrs["mean_fit_time"])
    assert ours.best_index_ == 1


def test_raising_trial_is_failed_and_caught_or_raised(digits):
    X, y = digits
    space = {"alpha": Float(-1.0, 1.0)}

    def search(catch):
        study = optuna.create_study(direction="maximize")
        study.enqueue_trial({"alpha": 0.01})
        study.enqueue_trial({"alpha": -0.5})
        study.enqueue_trial({"alpha": 0.02})
        return OptunaSearchCV(
            _mlp(),
            space,
            cv=3,
            n_trials=3,
            study=study,
            error_score="raise",
            catch=catch,
            trials_per_batch=3,
            progress=False,
        )

    caught = search((ValueError,)).fit(X, y)
    states = [t.state.name for t in caught.trials_]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"]
    with pytest.raises(ValueError, match="alpha"):
        search(()).fit(X, y)


def _record_results(monkeypatch):
    """Capture every engine result of the search's scheduler."""
    seen = []
    original = scheduler_module.train_models

    def train_models(data, tasks, **kwargs):
        results = original(data, tasks, **kwargs)
        seen.extend(zip(tasks, results, strict=True))
        return results

    monkeypatch.setattr(scheduler_module, "train_models", train_models)
    return seen


def test_pruned_trials_leave_their_packs(digits, monkeypatch):
    X, y = digits
    seen = _record_results(monkeypatch)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=1),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    max_iter = 12
    search = OptunaSearchCV(
        MLPClassifier(hidden_layer_sizes=(8,), random_state=0),
        {**SPACE, "learning_rate_init": Float(1e-5, 1e-1, log=True)},
        cv=3,
        n_trials=10,
        study=study,
        enable_pruning=True,
        max_iter=max_iter,
        trials_per_batch=2,
        progress=False,
    ).fit(X, y)
    pruned = [t for t in search.trials_ if t.state.name == "PRUNED"]
    assert pruned, "MedianPruner pruned nothing"
    for trial in search.trials_:
        assert "mean_test_score" in trial.user_attrs
        steps = sorted(trial.intermediate_values)
        assert steps == list(range(len(steps)))
        if trial.state.name == "PRUNED":
            assert len(steps) < max_iter
            assert trial.value == trial.intermediate_values[steps[-1]]
        else:
            assert len(steps) == max_iter
    # The models of pruned trials stopped training when their trial was pruned.
    stopped = [r for t, r in seen if r.pruned]
    assert len(stopped) == 3 * len(pruned)
    assert all(r.n_iter < max_iter for r in stopped)
    assert all(r.n_iter == max_iter for t, r in seen if not r.pruned)
    assert all(t.incremental and t.incremental_epochs == max_iter for t, _ in seen)


def test_intermediate_values_are_mean_fold_scores():
    trials = [_FakeTrial(), _FakeTrial()]
    keys = [(0, 0), (0, 1), (1, 0), (1, 1)]
    policy = TrialPruning(trials, keys, np.nan)
    # Trial 0's folds are split over two packs: its epoch waits for both.
    stop = policy.end_epoch(np.array([0, 2, 3]), np.array([1, 1, 1]), [0.5, 0.2, 0.4])
    assert not stop.any()
    assert trials[0].reports == [] and trials[1].reports == [(0.3, 0)]
    policy.end_epoch(np.array([1]), np.array([1]), [0.7])
    assert trials[0].reports == [(0.6, 0)]
    trials[1].prune = True
    stop = policy.end_epoch(np.array([2, 3]), np.array([2, 2]), [0.1, 0.1])
    assert stop.all() and policy.pruned == {1}


class _FakeTrial:
    def __init__(self):
        self.reports = []
        self.prune = False

    def report(self, value, step):
        self.reports.append((pytest.approx(value), step))

    def should_prune(self):
        return self.prune


@pytest.mark.parametrize("pipeline", [False, True])
def test_last_intermediate_value_is_the_trial_value(digits, pipeline):
    # The per-epoch score is the default score on each test fold (through the
    # fold's fitted earlier steps for a Pipeline, which optuna_integration cannot
    # prune: a Pipeline has no partial_fit).
    X, y = digits
    estimator = _mlp(random_state=0)
    name = "alpha"
    if pipeline:
        estimator = make_pipeline(StandardScaler(), estimator)
        name = "mlpclassifier__alpha"
    search = OptunaSearchCV(
        estimator,
        {name: Float(1e-4, 1e-2, log=True)},
        cv=3,
        n_trials=2,
        enable_pruning=True,
        max_iter=4,
        random_state=0,
        dtype="float64",
        progress=False,
    ).fit(X, y)
    for trial in search.trials_:
        assert trial.state.name == "COMPLETE"
        assert trial.intermediate_values[3] == pytest.approx(trial.value, abs=1e-9)


def test_regressor_pruning_reports_r2(diabetes):
    X, y = diabetes
    search = OptunaSearchCV(
        MLPRegressor(hidden_layer_sizes=(8,), random_state=0),
        {"learning_rate_init": Float(1e-3, 1e-2, log=True)},
        cv=3,
        n_trials=2,
        enable_pruning=True,
        max_iter=5,
        random_state=0,
        progress=False,
    ).fit(X, y)
    for trial in search.trials_:
        assert len(trial.intermediate_values) == 5
        assert trial.intermediate_values[4] == pytest.approx(trial.value, abs=1e-4)


@pytest.mark.slow
def test_continues_a_killed_search_from_sqlite(digits, tmp_path):
    X, y = digits
    storage = f"sqlite:///{tmp_path / 'search.db'}"

    def study():
        return optuna.create_study(
            storage=storage,
            study_name="s",
            direction="maximize",
            load_if_exists=True,
            sampler=optuna.samplers.TPESampler(seed=0),
        )

    def kill_after_first(study, trial):
        if trial.number == 1:
            raise KeyboardInterrupt

    first = OptunaSearchCV(
        _mlp(),
        SPACE,
        cv=3,
        n_trials=6,
        study=study(),
        callbacks=[kill_after_first],
        trials_per_batch=2,
        progress=False,
    )
    with pytest.raises(KeyboardInterrupt):
        first.fit(X, y)
    loaded = study()
    states = [t.state.name for t in loaded.trials]
    assert states == ["COMPLETE", "COMPLETE"]
    n_left = 6 - states.count("COMPLETE")
    second = OptunaSearchCV(
        _mlp(), SPACE, cv=3, n_trials=n_left, study=loaded, progress=False
    ).fit(X, y)
    reloaded = study()
    assert [t.state.name for t in reloaded.trials] == ["COMPLETE"] * 6
    assert second.n_trials_ == 6
    # An RDB storage hands user attributes back sorted by name.
    assert "split2_test_score" in second.cv_results_
    assert second.best_score_ == reloaded.best_value


def test_interrupted_batch_fails_its_unfinished_trials(digits, tmp_path):
    X, y = digits

    def interrupt(study, trial):
        raise KeyboardInterrupt

    study = optuna.create_study(direction="maximize")
    search = OptunaSearchCV(
        _mlp(),
        SPACE,
        cv=3,
        n_trials=3,
        study=study,
        callbacks=[interrupt],
        trials_per_batch=3,
        progress=False,
    )
    with pytest.raises(KeyboardInterrupt):
        search.fit(X, y)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "FAIL"]


def test_architectures_as_strings_or_width_and_depth(digits):
    X, y = digits
    strings = OptunaSearchCV(
        _mlp(),
        {"hidden_layer_sizes": Categorical(["6", "4,4"])},
        cv=3,
        n_trials=3,
        random_state=0,
        progress=False,
    ).fit(X, y)
    sizes = {t.params["hidden_layer_sizes"] for t in strings.trials_}
    assert sizes <= {"6", "4,4"}
    expected = {"6": (6,), "4,4": (4, 4)}[strings.best_params_["hidden_layer_sizes"]]
    assert strings.best_estimator_.hidden_layer_sizes == expected
    shaped = OptunaSearchCV(
        make_pipeline(StandardScaler(), _mlp()),
        {
            "mlpclassifier__hidden_layer_width": Int(3, 6),
            "mlpclassifier__hidden_layer_depth": Int(1, 2),
        },
        cv=3,
        n_trials=2,
        random_state=0,
        progress=False,
    ).fit(X, y)
    best = shaped.best_params_
    width = best["mlpclassifier__hidden_layer_width"]
    depth = best["mlpclassifier__hidden_layer_depth"]
    assert shaped.best_estimator_[-1].hidden_layer_sizes == (width,) * depth


@pytest.mark.parametrize(
    "name, make, match",
    [
        ("hidden_layer_sizes", lambda: Categorical([(10,), (5, 5)]), "as a string"),
        ("hidden_layer_sizes", lambda: Categorical(["10", "5;5"]), "architecture"),
        ("hidden_layer_width", lambda: Int(2, 4), "without hidden_layer_depth"),
        ("alpha", lambda: [1e-4, 1e-3], "must be a optuna distribution"),
    ],
)
def test_bad_spaces_are_rejected(digits, name, make, match):
    X, y = digits
    with pytest.raises(ValueError, match=match):
        OptunaSearchCV(_mlp(), {name: make()}, progress=False).fit(X, y)


def test_checks_before_training(digits):
    X, y = digits
    with pytest.raises(ValueError, match="or a study, not both"):
        study = optuna.create_study(direction="maximize")
        OptunaSearchCV(_mlp(), SPACE, checkpoint="x.jsonl", study=study).fit(X, y)
    with pytest.raises(ValueError, match="must support partial_fit"):
        OptunaSearchCV(
            make_pipeline(StandardScaler(), LogisticRegression()),
            {},
            enable_pruning=True,
        ).fit(X, y)
    minimize = optuna.create_study(direction="minimize")
    with pytest.raises(ValueError, match="maximize"):
        OptunaSearchCV(_mlp(), SPACE, study=minimize).fit(X, y)


@pytest.mark.slow
def test_pipelines_and_other_estimators(digits):
    X, y = digits
    pipe = OptunaSearchCV(
        make_pipeline(StandardScaler(), _mlp()),
        {"mlpclassifier__alpha": Float(1e-4, 1e-2, log=True)},
        cv=3,
        n_trials=2,
        progress=False,
    ).fit(X, y)
    assert pipe.best_estimator_[-1].__class__ is SklearnMLPClassifier
    logistic = OptunaSearchCV(
        LogisticRegression(max_iter=50),
        {"C": Float(0.1, 10, log=True)},
        cv=3,
        n_trials=2,
        progress=False,
    ).fit(X, y)
    assert logistic.best_score_ > 0.8
    # With pruning, an estimator without a fused form runs optuna_integration's loop.
    sgd = OptunaSearchCV(
        SGDClassifier(random_state=0),
        {"alpha": Float(1e-5, 1e-2, log=True)},
        cv=3,
        n_trials=2,
        enable_pruning=True,
        max_iter=3,
        progress=False,
    ).fit(X, y)
    assert [len(t.intermediate_values) for t in sgd.trials_] == [3, 3]


def test_lbfgs_trials_fail_under_pruning_as_partial_fit_does(digits):
    X, y = digits
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({"solver": "lbfgs"})
    study.enqueue_trial({"solver": "adam"})
    search = OptunaSearchCV(
        _mlp(),
        {"solver": Categorical(["lbfgs", "adam"])},
        cv=3,
        n_trials=2,
        study=study,
        enable_pruning=True,
        max_iter=3,
        progress=False,
    ).fit(X, y)
    assert [t.state.name for t in search.trials_] == ["FAIL", "COMPLETE"]


def test_batch_size_follows_the_device():
    search = OptunaSearchCV(_mlp(), SPACE, n_trials=200, device="cpu")
    assert search._batch_size(5) >= 10
    assert OptunaSearchCV(_mlp(), SPACE, n_trials=20)._batch_size(5) == 10
    assert OptunaSearchCV(_mlp(), SPACE, trials_per_batch=3)._batch_size(5) == 3


@pytest.mark.slow
def test_import_torchhpo_without_optuna():
    code = (
        "import sys; sys.modules['optuna'] = None\n"
        "import torchhpo\n"
        "try:\n"
        "    torchhpo.OptunaSearchCV\n"
        "except ImportError as e:\n"
        "    print('ImportError', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "torchhpo[optuna]" in out.stdout


def test_timeout_and_study_stop_end_the_search_after_a_batch(digits, monkeypatch):
    import time
    import types

    from torchhpo.search import _optuna_trials

    X, y = digits
    # A clock that advances one second per reading: the timeout (checked before
    # each batch, never inside one) passes after the first batch, however fast.
    ticks = iter(range(1000))
    clock = types.SimpleNamespace(monotonic=lambda: next(ticks), time=time.time)
    monkeypatch.setattr(_optuna_trials, "time", clock)
    timed = OptunaSearchCV(
        _mlp(),
        SPACE,
        cv=3,
        n_trials=None,
        timeout=1.5,
        trials_per_batch=2,
        progress=False,
    ).fit(X, y)
    assert timed.n_trials_ == 2
    monkeypatch.undo()

    def stop(study, trial):
        study.stop()

    stopped = OptunaSearchCV(
        _mlp(),
        SPACE,
        cv=3,
        n_trials=10,
        callbacks=[stop],
        trials_per_batch=3,
        progress=False,
    ).fit(X, y)
    assert [t.state.name for t in stopped.trials_] == ["COMPLETE"] * 3


def test_pruned_search_first_asks_the_pruners_startup_trials(digits, monkeypatch):
    X, y = digits
    calls = []
    original = scheduler_module.train_models

    def train_models(data, tasks, **kwargs):
        calls.append(len(tasks))
        return original(data, tasks, **kwargs)

    monkeypatch.setattr(scheduler_module, "train_models", train_models)
    study = optuna.create_study(
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3),
    )
    OptunaSearchCV(
        _mlp(),
        SPACE,
        cv=3,
        n_trials=7,
        study=study,
        enable_pruning=True,
        max_iter=3,
        trials_per_batch=10,
        progress=False,
    ).fit(X, y)
    assert calls == [3 * 3, 4 * 3]


def test_pruning_with_another_scoring_says_what_is_reported(digits):
    X, y = digits
    search = OptunaSearchCV(
        _mlp(),
        SPACE,
        cv=3,
        n_trials=1,
        enable_pruning=True,
        max_iter=2,
        scoring="f1_macro",
        progress=False,
    )
    with pytest.warns(UserWarning, match=r"own score \(accuracy\)"):
        search.fit(X, y)
