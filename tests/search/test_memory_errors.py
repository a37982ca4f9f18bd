"""A candidate too big to allocate fails on its own, as scikit-learn's failing fit.

scikit-learn's MLP raises ``MemoryError`` (NumPy's) for such a layer, and its search
applies ``error_score`` to that candidate: with ``np.nan`` a ``FitFailedWarning``
and nan scores while the other candidates train, with ``"raise"`` the
``MemoryError``. Each test runs scikit-learn's search side by side.
"""

import numpy as np
import pytest
from sklearn.exceptions import FitFailedWarning
from sklearn.model_selection import GridSearchCV as SkGridSearchCV
from sklearn.neural_network import MLPClassifier as SkMLPClassifier

from torchhpo import GridSearchCV, MLPClassifier

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore:One or more of the test scores"),
]

#: ~10**12 weights per input: neither NumPy nor torch can allocate them.
HUGE = (10**12,)
GRID = {"hidden_layer_sizes": [HUGE, (8,)]}


def _searches(error_score, grid=GRID):
    params = dict(max_iter=5, random_state=0)
    return (
        SkGridSearchCV(SkMLPClassifier(**params), grid, cv=2, error_score=error_score),
        GridSearchCV(
            MLPClassifier(**params), grid, cv=2, error_score=error_score, progress=False
        ),
    )


def test_an_unallocatable_candidate_scores_error_score(digits_small):
    for search in _searches(np.nan):
        with pytest.warns(FitFailedWarning, match="MemoryError") as record:
            search.fit(*digits_small)
        failed = [w for w in record if w.category is FitFailedWarning]
        assert "2 fits failed out of a total of 4" in str(failed[0].message)
        scores = search.cv_results_["mean_test_score"]
        assert np.isnan(scores[0]) and np.isfinite(scores[1])
        assert search.best_params_ == {"hidden_layer_sizes": (8,)}
    # The other candidate trained as in a search without the failing one.
    _, alone = _searches(np.nan, {"hidden_layer_sizes": [(8,)]})
    alone.fit(*digits_small)
    for key in ("split0_test_score", "split1_test_score"):
        assert search.cv_results_[key][1] == alone.cv_results_[key][0]


def test_error_score_raise_raises_memory_error(digits_small):
    for search in _searches("raise"):
        with pytest.raises(MemoryError):
            search.fit(*digits_small)
