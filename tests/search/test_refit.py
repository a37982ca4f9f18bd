"""The refit: single-threaded on a CPU, and equal to a plain fit bit for bit."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from torchhpo import GridSearchCV, MLPClassifier, MLPRegressor
from torchhpo.neural_network import BaseMLP
from torchhpo.search._estimators import to_torch

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FAST = {"max_iter": 15, "random_state": 0}


def _weights(estimator):
    mlp = estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator
    return mlp.coefs_ + mlp.intercepts_


def _plain_fit(best, X, y, threads):
    """A plain fit of the winner with torch's ``threads`` (tests run on one).

    scikit-learn's MLP is trained as its torchhpo translation, as the search does.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if isinstance(best, SklearnMLPClassifier):
            return to_torch(best).fit(X, y).to_sklearn()
        return best.fit(X, y)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize(
    ("estimator", "prefix", "dataset"),
    [
        (MLPClassifier(**FAST), "", "digits"),
        (MLPClassifier(dtype="float64", early_stopping=True, **FAST), "", "digits"),
        (SklearnMLPClassifier(**FAST), "", "digits"),
        (
            make_pipeline(StandardScaler(), MLPClassifier(**FAST)),
            "mlpclassifier__",
            "digits",
        ),
        (MLPRegressor(**FAST), "", "diabetes"),
    ],
)
def test_refit_equals_a_plain_fit(estimator, prefix, dataset, request):
    X, y = request.getfixturevalue(dataset)
    grid = {
        f"{prefix}hidden_layer_sizes": [(32,), (16, 16)],
        f"{prefix}solver": ["adam", "sgd"],
    }
    search = GridSearchCV(estimator, grid, cv=3, progress=False).fit(X, y)
    best = clone(estimator).set_params(**search.best_params_)
    # On one thread, as the refit: with more, MKL may split the matmuls (it does
    # on AMD EPYC) and change the last bits of a float32 plain fit.
    plain = _plain_fit(best, X, y, threads=1)
    assert type(search.best_estimator_) is type(plain)
    for got, expected in zip(
        _weights(search.best_estimator_), _weights(plain), strict=True
    ):
        np.testing.assert_array_equal(got, expected)


def test_refit_trains_on_one_thread_and_restores_the_count(digits, monkeypatch):
    X, y = digits
    seen = []
    fit = BaseMLP.fit

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(BaseMLP, "fit", spy)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        GridSearchCV(
            MLPClassifier(**FAST), {"alpha": [1e-4, 1e-2]}, cv=2, progress=False
        ).fit(X, y)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
    assert seen == [1]
