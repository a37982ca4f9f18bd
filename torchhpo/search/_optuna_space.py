"""Optuna search spaces for MLPs: checks, and architectures written as strings.

Optuna stores only ``None``, ``bool``, ``int``, ``float`` and ``str`` choices, so
``hidden_layer_sizes`` cannot be a categorical of tuples. Two ways to search
architectures instead, both turned into ``hidden_layer_sizes`` when a trial's
parameters are set on the estimator (:func:`estimator_params`):

* strings of comma-separated layer widths::

      {"hidden_layer_sizes": CategoricalDistribution(["100", "50,50"])}

* an integer width and depth (every hidden layer ``width`` units wide)::

      {"hidden_layer_width": IntDistribution(16, 256, log=True),
       "hidden_layer_depth": IntDistribution(1, 3)}

Both also work for a Pipeline's MLP step (``mlp__hidden_layer_sizes``,
``mlp__hidden_layer_width``, ...). The trial's parameters, and so ``best_params_``,
keep the values as Optuna stored them; :func:`estimator_params` gives the
estimator's.

The study's parameter names may differ from the estimator's: the search's
``param_names`` maps a study name (``alpha``, as a user writes it) to the estimator
parameter it sets (``mlp__alpha``, the Pipeline's), checked by
:func:`check_param_names` and applied by :func:`estimator_params`.
"""

from __future__ import annotations

from collections.abc import Mapping

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    _convert_old_distribution_to_new_distribution,
)

SIZES = "hidden_layer_sizes"
WIDTH = "hidden_layer_width"
DEPTH = "hidden_layer_depth"


def _split(name: str) -> tuple[str, str]:
    """Split ``"step__param"`` into ``("step__", "param")``."""
    head, sep, tail = name.rpartition("__")
    return head + sep, tail


def check_deprecated_distributions(param_distributions) -> None:
    """Refuse Optuna's deprecated distributions, as optuna_integration's constructor.

    Raises
    ------
    ValueError
        If a value is a deprecated distribution (``UniformDistribution`` ...).
        Anything that is not a mapping of distributions is left to ``fit``.
    """
    if not isinstance(param_distributions, Mapping):
        return
    for name, dist in param_distributions.items():
        if isinstance(dist, BaseDistribution) and (
            dist != _convert_old_distribution_to_new_distribution(dist)
        ):
            raise ValueError(
                f"Deprecated distribution is specified in `{name}` of "
                "param_distributions. Rejecting this because it may cause unexpected "
                "behavior. Please use new distributions such as FloatDistribution etc."
            )


def check_distributions(param_distributions: Mapping) -> None:
    """Check a search space as ``optuna_integration.OptunaSearchCV`` does, and more.

    Raises
    ------
    ValueError
        If a value is not an Optuna distribution, is a deprecated one, is a
        ``hidden_layer_sizes`` categorical whose choices are not strings or
        integers, or if only one of ``hidden_layer_width`` / ``hidden_layer_depth``
        is given.
    """
    for name, dist in param_distributions.items():
        if not isinstance(dist, BaseDistribution):
            raise ValueError(f"Value of {name} must be a optuna distribution.")
    check_deprecated_distributions(param_distributions)
    for name, dist in param_distributions.items():
        prefix, param = _split(name)
        if param == SIZES and isinstance(dist, CategoricalDistribution):
            bad = [c for c in dist.choices if not isinstance(c, str | int)]
            if bad or any(isinstance(c, bool) for c in dist.choices):
                raise ValueError(
                    f"{name} choices {list(dist.choices)!r} cannot be stored by "
                    "Optuna (it keeps only None, bool, int, float and str). Write "
                    "each architecture as a string of layer widths, e.g. "
                    f'CategoricalDistribution(["100", "50,50"]), or search '
                    f"'{prefix}{WIDTH}' and '{prefix}{DEPTH}' as integers."
                )
            for choice in dist.choices:
                parse_sizes(choice, name)
        if param in (WIDTH, DEPTH):
            other = prefix + (DEPTH if param == WIDTH else WIDTH)
            if other not in param_distributions:
                raise ValueError(
                    f"{name} is searched without {other}: give both, they make "
                    f"{prefix}{SIZES} = (width,) * depth."
                )


def parse_sizes(value, name: str = SIZES) -> tuple[int, ...]:
    """Return the layer widths ``"50,50"`` (or ``50``) stands for: ``(50, 50)``.

    Raises
    ------
    ValueError
        If ``value`` is not an integer or comma-separated positive integers.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    try:
        sizes = tuple(int(part) for part in str(value).split(","))
    except ValueError:
        sizes = ()
    if not isinstance(value, str) or not sizes or min(sizes) < 1:
        raise ValueError(
            f"{name}={value!r} is not an architecture: expected comma-separated "
            'positive layer widths such as "100" or "50,50".'
        )
    return sizes


def check_param_names(
    param_names: Mapping | None, param_distributions: Mapping
) -> dict:
    """Check a search's ``param_names``; return it as a plain dict.

    Parameters
    ----------
    param_names : mapping of str to str or None
        Study parameter name -> the estimator parameter it sets.
    param_distributions : mapping
        The search space, keyed by study names.

    Raises
    ------
    TypeError
        If a key or value is not a string.
    ValueError
        If a key is not a name of ``param_distributions``, or two names would set
        the same estimator parameter.
    """
    names = dict(param_names or {})
    for key, value in names.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                "param_names must map parameter names (str) to estimator parameter "
                f"names (str), got {key!r}: {value!r}."
            )
        if key not in param_distributions:
            known = ", ".join(map(repr, param_distributions))
            raise ValueError(
                f"param_names renames {key!r}, which is not a key of "
                f"param_distributions (keys: {known})."
            )
    targets: dict = {}
    for name in param_distributions:
        target = names.get(name, name)
        if target in targets:
            raise ValueError(
                f"param_names makes {targets[target]!r} and {name!r} both set the "
                f"estimator parameter {target!r}."
            )
        targets[target] = name
    return names


def estimator_names(params: Mapping, names: Mapping | None) -> dict:
    """Return ``params`` keyed by the estimator's names (``names`` maps study names).

    Names not in ``names`` are kept: they are the estimator's own, and so are those
    of a study made before its parameters were renamed.
    """
    if not names:
        return dict(params)
    return {names.get(name, name): value for name, value in params.items()}


def estimator_params(params: Mapping, names: Mapping | None = None) -> dict:
    """Return a trial's parameters as the estimator takes them.

    Study names become the estimator's through ``names`` (a search's
    ``param_names``); ``hidden_layer_sizes`` strings become tuples;
    ``hidden_layer_width`` and ``hidden_layer_depth`` become
    ``hidden_layer_sizes``; the rest is unchanged.
    """
    params = estimator_names(params, names)
    out = {}
    for name, value in params.items():
        prefix, param = _split(name)
        if param == SIZES and isinstance(value, str):
            out[name] = parse_sizes(value, name)
        elif param == WIDTH:
            depth = params.get(prefix + DEPTH)
            if depth is None:
                raise ValueError(f"{name} needs {prefix}{DEPTH} in the same trial.")
            out[prefix + SIZES] = (int(value),) * int(depth)
        elif param == DEPTH:
            if prefix + WIDTH not in params:
                raise ValueError(f"{name} needs {prefix}{WIDTH} in the same trial.")
        else:
            out[name] = value
    return out
