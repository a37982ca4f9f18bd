"""The fused training engine: many MLPs of identical shapes trained as one.

The engine knows nothing of scikit-learn's estimator or search API. Callers describe
models as :class:`ModelTask` (hyper-parameters, index sets, seed) over one
:class:`DeviceData`, and get :class:`ModelResult` back from :func:`train_models`.

Placement, in the order :func:`train_models` uses it: ``memory`` (how many models fit
in a pack), ``jobs`` (one pack's training, split and retried on out-of-memory), and
``backends`` (where jobs run: worker threads on local devices, or Ray tasks).
"""

from .data import DeviceData
from .pack import Pack
from .slot_init import effective_batch_size
from .spec import (
    Hyperparams,
    ModelResult,
    ModelState,
    ModelTask,
    OptimizerState,
)
from .trainer import plan_packs, train_models

__all__ = [
    "DeviceData",
    "Hyperparams",
    "ModelResult",
    "ModelState",
    "ModelTask",
    "OptimizerState",
    "Pack",
    "effective_batch_size",
    "plan_packs",
    "train_models",
]
