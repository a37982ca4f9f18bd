"""scikit-learn-compatible MLP estimators trained by the fused engine."""

from ._base import BaseMLP
from ._classifier import MLPClassifier
from ._regressor import MLPRegressor
from ._to_torch import to_torch_module

__all__ = ["BaseMLP", "MLPClassifier", "MLPRegressor", "to_torch_module"]
