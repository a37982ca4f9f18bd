"""A search's ConvergenceWarnings: once per search, pointing at the user's line."""

import warnings

import pytest
from sklearn.exceptions import ConvergenceWarning

from torchhpo import GridSearchCV, HalvingGridSearchCV, MLPClassifier

GRID = {"alpha": [1e-5, 1e-4, 1e-3, 1e-2]}


def _mlp():
    return MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0)


def _search_warnings(search, X, y):
    """The ConvergenceWarnings the search itself gave (not its refit's)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search.fit(X, y)
    return [
        w
        for w in caught
        if issubclass(w.category, ConvergenceWarning)
        and "fits of this search" in str(w.message)
    ]


@pytest.mark.parametrize("kind", ["grid", "halving"])
def test_warning_points_at_the_callers_line(digits, kind):
    X, y = digits
    if kind == "grid":
        search = GridSearchCV(_mlp(), GRID, cv=2, progress=False)
    else:
        search = HalvingGridSearchCV(_mlp(), GRID, cv=2, factor=2, progress=False)
    (warning,) = _search_warnings(search, X, y)
    assert warning.filename == __file__


def test_halving_warns_once_for_all_iterations(digits):
    X, y = digits
    search = HalvingGridSearchCV(_mlp(), GRID, cv=2, factor=2, progress=False)
    (warning,) = _search_warnings(search, X, y)
    n_fits = sum(search.n_candidates_) * search.n_splits_
    assert f" of {n_fits} fits of this search" in str(warning.message)


def test_halving_on_max_iter_warns_only_about_its_last_iteration(digits):
    X, y = digits
    search = HalvingGridSearchCV(
        _mlp(),
        GRID,
        cv=2,
        factor=2,
        resource="max_iter",
        min_resources=2,
        max_resources=8,
        progress=False,
    )
    (warning,) = _search_warnings(search, X, y)
    last = search.n_resources_[-1]
    assert f"Maximum iterations ({last})" in str(warning.message)
    assert f"of {search.n_candidates_[-1] * search.n_splits_} fits" in str(
        warning.message
    )
