"""Where packs train: on this machine's devices, or as tasks on a Ray cluster.

A backend takes the planned :class:`~torchhpo.engine.jobs.Job` list and runs every
job through :func:`~torchhpo.engine.jobs.run_job`, delivering results through the
job context. A model's result does not depend on where or with which pack-mates it
trained, so every backend gives the same results (same device type and dtype).
"""

from __future__ import annotations

from ._base import Backend
from .local import LocalBackend
from .ray_tasks import RayBackend

#: Backend names accepted by ``train_models(backend=...)`` and the searches.
BACKENDS = {"local": LocalBackend, "ray": RayBackend}


def get_backend(backend: str | Backend | None) -> Backend:
    """Return a backend instance for a name (``"local"``, ``"ray"``) or instance.

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if backend is None:
        return LocalBackend()
    if isinstance(backend, Backend):
        return backend
    if backend not in BACKENDS:
        raise ValueError(
            f"The 'backend' parameter must be one of {sorted(BACKENDS)} or a Backend "
            f"instance. Got {backend!r} instead."
        )
    return BACKENDS[backend]()


__all__ = ["BACKENDS", "Backend", "LocalBackend", "RayBackend", "get_backend"]
