"""Checks on parameter spaces, made before anything is sampled or trained."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _describe(distribution) -> str:
    """Return a readable name for a distribution: ``randint(0.0001, 0.001)``."""
    dist = getattr(distribution, "dist", None)
    args = getattr(distribution, "args", None)
    if dist is not None and args is not None:
        shown = ", ".join(repr(a) for a in args)
        return f"scipy.stats.{getattr(dist, 'name', type(dist).__name__)}({shown})"
    return repr(distribution)


def _suggestion(distribution) -> str:
    args = getattr(distribution, "args", ())
    if (
        len(args) == 2
        and all(isinstance(a, (int, float)) for a in args)
        and 0 < args[0] < args[1]
    ):
        example = f"scipy.stats.loguniform({args[0]!r}, {args[1]!r})"
    else:
        example = "scipy.stats.loguniform(low, high)"
    hint = (
        f"For a continuous range such as a regularisation strength or a learning "
        f"rate, use {example}"
    )
    if getattr(getattr(distribution, "dist", None), "name", None) == "randint":
        hint += (
            "; scipy.stats.randint(low, high) draws integers low <= k < high and "
            "needs integer bounds"
        )
    return hint + "."


def check_distributions(param_distributions) -> None:
    """Check that every distribution of a RandomizedSearchCV space can be sampled.

    Draws one value from each distribution (an object with ``rvs``) with a private
    random generator, so the search's own sampling is not disturbed.

    Parameters
    ----------
    param_distributions : dict or list of dict
        RandomizedSearchCV's ``param_distributions``.

    Raises
    ------
    ValueError
        Naming the parameter whose distribution raises when sampled or samples NaN
        (e.g. ``scipy.stats.randint(0.0001, 0.001)``), and suggesting
        ``scipy.stats.loguniform``.
    """
    spaces = (
        [param_distributions]
        if isinstance(param_distributions, Mapping)
        else param_distributions
    )
    if not isinstance(spaces, list):
        return  # ParameterSampler reports the type error
    for space in spaces:
        if not isinstance(space, Mapping):
            continue
        for name, distribution in space.items():
            if not hasattr(distribution, "rvs"):
                continue
            try:
                value = distribution.rvs(random_state=np.random.RandomState(0))
            except Exception as exc:
                raise ValueError(
                    f"The distribution for parameter {name!r}, "
                    f"{_describe(distribution)}, cannot produce values: sampling it "
                    f"raised {type(exc).__name__}: {exc} {_suggestion(distribution)}"
                ) from exc
            if isinstance(value, (float, np.floating)) and np.isnan(value):
                raise ValueError(
                    f"The distribution for parameter {name!r}, "
                    f"{_describe(distribution)}, samples NaN. "
                    f"{_suggestion(distribution)}"
                )
