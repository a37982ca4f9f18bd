"""Small data sets shared by the search tests (fast on a 2-core CPU)."""

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits


@pytest.fixture(scope="session")
def digits():
    """A class-balanced subset of digits, scaled to [0, 1]."""
    X, y = load_digits(return_X_y=True)
    return X[:240] / 16.0, y[:240]


@pytest.fixture(scope="session")
def digits_small():
    """Three digit classes, 150 samples: for searches that scikit-learn also runs."""
    X, y = load_digits(n_class=3, return_X_y=True)
    return X[:150] / 16.0, y[:150]


@pytest.fixture(scope="session")
def diabetes():
    """A standardised regression subset."""
    X, y = load_diabetes(return_X_y=True)
    X, y = X[:200], y[:200]
    return (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()


@pytest.fixture
def rng():
    return np.random.RandomState(0)
