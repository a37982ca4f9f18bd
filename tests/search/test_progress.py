"""The search's bar: model-epochs, moving while packs train, ending at 100 %,
with the finished fits and the best loss in its postfix."""

import pytest
from sklearn.neighbors import KNeighborsClassifier

import torchhpo.search._progress as progress_module
from torchhpo import GridSearchCV, MLPClassifier

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


class RecordingBar:
    """Stands in for tqdm: records what the search does to its bar."""

    bars: list = []

    def __init__(self, total, disable, desc, unit, leave, **options):
        self.total, self.disable, self.unit = total, disable, unit
        self.options = options
        self.n, self.updates, self.postfix = 0, [], ""
        self.percents = []
        self.closed = False
        RecordingBar.bars.append(self)

    def update(self, n):
        self.n += n
        self.updates.append((n, self.postfix))
        self.percents.append(self.n / self.total)

    def set_postfix_str(self, text, refresh=True):
        self.postfix = text

    def close(self):
        self.closed = True


@pytest.fixture
def bars(monkeypatch):
    RecordingBar.bars = []
    monkeypatch.setattr(progress_module, "tqdm", RecordingBar)
    return RecordingBar.bars


def test_bar_counts_model_epochs_and_ends_full(digits, bars):
    X, y = digits
    search = GridSearchCV(
        MLPClassifier(hidden_layer_sizes=(8,), random_state=0, tol=1e-2),
        {"max_iter": [6, 20], "alpha": [1e-4, 1e-2]},
        cv=2,
        device="cpu",
        max_pack_size=8,
    ).fit(X, y)
    (bar,) = bars
    assert bar.unit == "epoch"
    assert bar.total == 2 * 2 * (6 + 20)
    assert bar.n == bar.total and bar.closed
    assert len(search.cv_results_["params"]) == 4
    # The bar moved before the first fit finished.
    first_done = next(
        i
        for i, (_, post) in enumerate(bar.updates)
        if post.startswith("fits=") and not post.startswith("fits=0/")
    )
    assert sum(n for n, _ in bar.updates[:first_done]) >= 8
    assert bar.postfix.startswith("fits=8/8, best_loss=")
    assert bar.postfix.endswith(f", best_score={search.best_score_:.4g}")


def test_per_fit_candidates_and_disabled_bar(digits, bars):
    X, y = digits
    search = GridSearchCV(
        KNeighborsClassifier(), {"n_neighbors": [1, 3]}, cv=2, progress=False
    ).fit(X, y)
    (bar,) = bars
    assert bar.disable and bar.total == 4 and bar.n == 4
    assert bar.postfix == f"fits=4/4, best_score={search.best_score_:.4g}"


def test_multimetric_shows_the_refit_metric(digits, bars):
    X, y = digits
    search = GridSearchCV(
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0),
        {"alpha": [1e-4, 1e-1]},
        scoring=["accuracy", "f1_macro"],
        refit="f1_macro",
        cv=2,
        device="cpu",
    ).fit(X, y)
    (bar,) = bars
    assert bar.postfix.endswith(f", best_score={search.best_score_:.4g}")


def _one_forward_bar(bars):
    """The search drew one bar, which only moved forward and ended at 100 %."""
    assert len(bars) == 1
    (bar,) = bars
    assert bar.closed and bar.updates
    assert all(n > 0 for n, _ in bar.updates)
    assert bar.n == bar.total
    return bar


def _searches():
    from scipy.stats import loguniform

    from torchhpo import HalvingGridSearchCV, RandomizedSearchCV

    mlp = MLPClassifier(hidden_layer_sizes=(4,), max_iter=8, random_state=0)
    return {
        "grid": GridSearchCV(mlp, {"alpha": [1e-4, 1e-1]}, cv=2, device="cpu"),
        "random": RandomizedSearchCV(
            mlp,
            {"alpha": loguniform(1e-5, 1e-1)},
            n_iter=3,
            cv=2,
            random_state=0,
            device="cpu",
        ),
        "halving_samples": HalvingGridSearchCV(
            mlp, {"alpha": [1e-5, 1e-4, 1e-3, 1e-2]}, cv=2, factor=2, device="cpu"
        ),
        "halving_max_iter": HalvingGridSearchCV(
            mlp,
            {"alpha": [1e-5, 1e-4, 1e-3, 1e-2]},
            cv=2,
            factor=2,
            resource="max_iter",
            max_resources=16,
            min_resources=4,
            device="cpu",
        ),
    }


@pytest.mark.parametrize(
    "kind", ["grid", "random", "halving_samples", "halving_max_iter"]
)
def test_one_forward_bar_per_search(digits, bars, kind):
    X, y = digits
    _searches()[kind].fit(X, y)
    _one_forward_bar(bars)


@pytest.mark.parametrize("pruning", [False, True])
def test_optuna_draws_one_forward_bar_ending_full(digits, bars, pruning):
    optuna = pytest.importorskip("optuna")
    from torchhpo import OptunaSearchCV

    X, y = digits
    kwargs = {"enable_pruning": True, "max_iter": 12} if pruning else {}
    search = OptunaSearchCV(
        MLPClassifier(hidden_layer_sizes=(16,), max_iter=8, random_state=0),
        {
            "learning_rate_init": optuna.distributions.FloatDistribution(
                1e-6, 1e-1, log=True
            )
        },
        cv=2,
        n_trials=12,
        trials_per_batch=3,
        random_state=0,
        device="cpu",
        study=optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=0),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
        ),
        **kwargs,
    )
    search.fit(X, y)
    bar = _one_forward_bar(bars)
    # Its total was known from the first batch on: the percentage never fell.
    assert bar.percents == sorted(bar.percents)
    assert bar.total == 12 * 2 * (12 if pruning else 8)
    if pruning:
        states = {t.state.name for t in search.trials_}
        assert "PRUNED" in states


def test_bar_is_throttled_when_stderr_is_a_log(digits, bars, monkeypatch):
    import io

    monkeypatch.setattr("sys.stderr", io.StringIO())
    X, y = digits
    _searches()["grid"].fit(X, y)
    (bar,) = bars
    assert bar.options["mininterval"] >= 30


def test_interrupted_search_leaves_its_bar_where_it_stopped(digits, bars, monkeypatch):
    import torchhpo.search._scheduler as scheduler_module

    def interrupted(*args, **kwargs):
        kwargs["on_epochs"](5)
        raise KeyboardInterrupt

    monkeypatch.setattr(scheduler_module, "train_models", interrupted)
    X, y = digits
    with pytest.raises(KeyboardInterrupt):
        _searches()["grid"].fit(X, y)
    (bar,) = bars
    assert bar.closed and bar.n == 5 and bar.total > 5
