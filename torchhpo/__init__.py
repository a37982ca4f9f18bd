"""torchhpo: scikit-learn's hyper-parameter searches for MLPs, trained as fused packs.

>>> from torchhpo import MLPClassifier, MLPRegressor, GridSearchCV, RandomizedSearchCV

``torchhpo.OptunaSearchCV`` is imported on first use: it needs the ``optuna`` extra.
"""

from ._version import __version__
from .neural_network import MLPClassifier, MLPRegressor
from .search import (
    GridSearchCV,
    HalvingGridSearchCV,
    HalvingRandomSearchCV,
    RandomizedSearchCV,
)

__all__ = [
    "GridSearchCV",
    "HalvingGridSearchCV",
    "HalvingRandomSearchCV",
    "MLPClassifier",
    "MLPRegressor",
    "OptunaSearchCV",
    "RandomizedSearchCV",
    "__version__",
]


def __getattr__(name: str):
    """Import ``OptunaSearchCV`` (and Optuna) only when it is used."""
    if name == "OptunaSearchCV":
        from .search import OptunaSearchCV

        return OptunaSearchCV
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
