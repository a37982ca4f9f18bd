"""torchhpo: scikit-learn's hyper-parameter searches for MLPs, trained as fused packs.

>>> from torchhpo import MLPClassifier, MLPRegressor, GridSearchCV, RandomizedSearchCV
"""

from .neural_network import MLPClassifier, MLPRegressor
from .search import (
    GridSearchCV,
    HalvingGridSearchCV,
    HalvingRandomSearchCV,
    RandomizedSearchCV,
)

__version__ = "0.1.0"

__all__ = [
    "GridSearchCV",
    "HalvingGridSearchCV",
    "HalvingRandomSearchCV",
    "MLPClassifier",
    "MLPRegressor",
    "RandomizedSearchCV",
    "__version__",
]
