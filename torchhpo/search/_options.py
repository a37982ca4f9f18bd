"""The torchhpo options every search takes, declared once.

``device``, ``dtype``, ``progress``, ``max_pack_size``, ``backend`` and
``checkpoint`` are keyword-only options of all five searches: the four derived from
scikit-learn's and :class:`~torchhpo.search._optuna.OptunaSearchCV`. Their
constraints (:data:`TORCHHPO_OPTIONS`) join each search's
``_parameter_constraints``, so scikit-learn's ``_validate_params`` checks them at
``fit`` with its ``InvalidParameterError``; :class:`SearchOptions` holds what the
declarations cannot say (a device that names no usable device) and what the
scheduler asks of the options.
"""

from __future__ import annotations

import numbers
import os

import torch

from .._device import resolve_devices, resolve_dtype
from .._sklearn_compat import Interval, StrOptions

#: Constraints of the torchhpo-only, keyword-only search options.
TORCHHPO_OPTIONS: dict = {
    "device": [None, str, torch.device, list, tuple],
    "dtype": [None, StrOptions({"float32", "float64"}), torch.dtype],
    "progress": ["boolean"],
    "max_pack_size": [Interval(numbers.Integral, 1, None, closed="left"), None],
    "backend": [StrOptions({"local", "ray"})],
    "checkpoint": [None, str, os.PathLike],
}


class SearchOptions:
    """Mixin of every torchhpo search: its torchhpo options, checked and resolved.

    The class using it sets ``device``, ``dtype``, ``progress``, ``max_pack_size``,
    ``backend`` and ``checkpoint`` in its constructor and merges
    :data:`TORCHHPO_OPTIONS` into its ``_parameter_constraints``.
    """

    def _check_torchhpo_options(self) -> None:
        """Fail early, quoting the value, on a device or dtype that cannot be used.

        Raises
        ------
        ValueError
            If ``device`` names no usable device (CUDA where there is none, an
            empty list) or ``dtype`` is a torch dtype other than float32/float64.
        """
        if self.device is not None:
            resolve_devices(self.device)
        if self.dtype is not None:
            resolve_dtype(self.dtype)

    def _engine_devices(self) -> list[torch.device] | None:
        """Devices the packs are spread over (None: each MLP's own device)."""
        return None if self.device is None else resolve_devices(self.device)

    def _mlp_device(self):
        """The device set on the MLPs (and ``best_estimator_``): the first listed."""
        if isinstance(self.device, list | tuple):
            return self.device[0]
        return self.device
