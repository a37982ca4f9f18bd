"""scikit-learn-compatible MLP estimators trained by the fused engine."""

from ._base import BaseMLP
from ._classifier import MLPClassifier
from ._regressor import MLPRegressor

__all__ = ["BaseMLP", "MLPClassifier", "MLPRegressor"]
