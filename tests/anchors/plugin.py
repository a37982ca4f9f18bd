"""Run scikit-learn's own test files with torchhpo's classes in place of its own.

A drop-in is proven by the tests its anchor wrote for itself. This pytest plugin runs
scikit-learn's installed tests of the searches, successive halving and the MLP (they
ship inside its wheel; nothing is copied here) with ``GridSearchCV``,
``RandomizedSearchCV``, ``HalvingGridSearchCV``, ``HalvingRandomSearchCV``,
``MLPClassifier`` and ``MLPRegressor`` bound to torchhpo's::

    python -m pytest -q -p tests.anchors.plugin --pyargs \\
        sklearn.model_selection.tests.test_search \\
        sklearn.model_selection.tests.test_successive_halving \\
        sklearn.neural_network.tests.test_mlp

While a test module is imported, the names it imports from ``sklearn.model_selection``
and ``sklearn.neural_network`` are torchhpo's, so every use the module makes of them,
its ``parametrize`` lists included, is torchhpo's; scikit-learn's own code keeps its
classes. The tests that fail by design are listed in :mod:`.expected_failures` and
marked ``xfail(strict=True)``: one that starts passing fails the run until its entry
is removed, and an entry naming no collected test is an error, so the list can only
shrink.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .expected_failures import EXPECTED_FAILURES

#: Anchor test files (by file name) -> {namespace module: names bound to torchhpo's}.
ANCHORS: dict[str, dict[str, tuple[str, ...]]] = {
    "test_search.py": {
        "sklearn.model_selection": (
            "GridSearchCV",
            "RandomizedSearchCV",
            "HalvingGridSearchCV",
            "HalvingRandomSearchCV",
        ),
    },
    "test_successive_halving.py": {
        "sklearn.model_selection": ("HalvingGridSearchCV", "HalvingRandomSearchCV"),
    },
    "test_mlp.py": {"sklearn.neural_network": ("MLPClassifier", "MLPRegressor")},
}

#: The scikit-learn packages the anchor files live in.
ANCHOR_PACKAGES = ("sklearn/model_selection/tests", "sklearn/neural_network/tests")


def _anchor_of(path: Path) -> str | None:
    """Return the anchor file name of ``path``, or None for any other file."""
    posix = path.as_posix()
    if path.name in ANCHORS and any(
        posix.endswith(f"{p}/{path.name}") for p in ANCHOR_PACKAGES
    ):
        return path.name
    return None


@contextmanager
def _torchhpo_names(bindings: dict[str, tuple[str, ...]]) -> Iterator[None]:
    """Bind the named scikit-learn classes to torchhpo's while the block runs."""
    import torchhpo

    # Halving's experimental flag sets its names on first import: import it first,
    # so that the test module's own import of it does not undo the binding.
    importlib.import_module("sklearn.experimental.enable_halving_search_cv")
    saved = []
    try:
        for module_name, names in bindings.items():
            module = importlib.import_module(module_name)
            for name in names:
                saved.append((module, name, getattr(module, name)))
                setattr(module, name, getattr(torchhpo, name))
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """Import an anchor test module with torchhpo's classes in scikit-learn's place."""
    path = getattr(collector, "path", None)
    anchor = _anchor_of(path) if isinstance(collector, pytest.Module) else None
    if anchor is None:
        return (yield)
    with _torchhpo_names(ANCHORS[anchor]):
        return (yield)


def pytest_configure(config):
    # As tests/conftest.py: small kernels on one thread (2-core CI machines).
    import torch

    torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark the expected failures strict xfail; refuse entries that match nothing."""
    collected = {}
    for item in items:
        anchor = _anchor_of(item.path)
        if anchor is not None:
            collected[f"{anchor}::{item.name}"] = item
    seen_anchors = {key.partition("::")[0] for key in collected}
    stale = [
        key
        for key in EXPECTED_FAILURES
        if key.partition("::")[0] in seen_anchors and key not in collected
    ]
    if stale:
        raise pytest.UsageError(
            "tests/anchors/expected_failures.py lists tests that were not collected "
            f"(renamed or removed upstream? drop them): {stale}"
        )
    for key, reason in EXPECTED_FAILURES.items():
        if key in collected:
            collected[key].add_marker(pytest.mark.xfail(reason=reason, strict=True))
