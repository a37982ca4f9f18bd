"""torchhpo: scikit-learn's hyper-parameter searches for MLPs, trained as fused packs.

>>> from torchhpo import MLPClassifier, MLPRegressor
"""

from .neural_network import MLPClassifier, MLPRegressor

__version__ = "0.1.0"

__all__ = ["MLPClassifier", "MLPRegressor", "__version__"]
