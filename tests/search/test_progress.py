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

    def __init__(self, total, disable, desc, unit, leave):
        self.total, self.disable, self.unit = total, disable, unit
        self.n, self.updates, self.postfix = 0, [], ""
        self.closed = False
        RecordingBar.bars.append(self)

    def update(self, n):
        self.n += n
        self.updates.append((n, self.postfix))

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
