"""The config checker's vocabulary: a failure names its key and what was expected.

:class:`Checker` holds the checks every section uses (a mapping of known keys, a
choice, an integer) and the two that hand a value to the class that will take it:
:meth:`Checker.param_value` to the estimator's own ``_validate_params``, and
:meth:`Checker.declared` to a search's ``_parameter_constraints``. The messages
quote values as YAML writes them (:func:`show`) and suggest the closest name
(:func:`did_you_mean`).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path

from .._device import resolve_device
from .._sklearn_compat import InvalidParameterError, validate_parameter_constraints
from ._schema import ConfigError, plain_value


class Checker:
    """Check one config file; every error names its key.

    Parameters
    ----------
    source : Path
        The config file (named in every error).
    """

    def __init__(self, source: Path):
        self.source = source

    def fail(self, key: str, message: str):
        """Raise the :class:`ConfigError` of ``key``."""
        raise ConfigError(key, message, self.source)

    def mapping(self, key: str, value, allowed: tuple, required: tuple = ()) -> dict:
        """A mapping of ``allowed`` keys holding every ``required`` one."""
        if not isinstance(value, Mapping):
            self.fail(
                key or "config",
                f"expected a mapping with keys {listed(allowed)}, got {show(value)}.",
            )
        for name in value:
            if name not in allowed:
                where = f"{key}.{name}" if key else str(name)
                self.fail(
                    where,
                    f"unknown key{did_you_mean(name, allowed)}; expected one of "
                    f"{listed(allowed)}.",
                )
        for name in required:
            if name not in value:
                where = f"{key}.{name}" if key else name
                self.fail(where, "missing; this key is required.")
        return dict(value)

    def choice(self, key: str, value, choices) -> str:
        """One of ``choices`` (a close misspelling is suggested)."""
        if not isinstance(value, str) or value not in choices:
            self.fail(
                key,
                f"unknown value {show(value)}{did_you_mean(value, choices)}; "
                f"expected one of {listed(choices)}.",
            )
        return value

    def integer(self, key: str, value, minimum: int | None = None) -> int:
        """An integer (not YAML's ``true``) of at least ``minimum``."""
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {show(value)}.")
        if minimum is not None and value < minimum:
            self.fail(key, f"expected an integer >= {minimum}, got {value}.")
        return value

    def declared(self, key: str, owner: type, name: str, value, expected: str):
        """Check ``value`` by ``owner``'s declared constraint on its ``name``.

        The rule is the class's own (its ``_parameter_constraints``, which its
        ``fit`` checks); the message is the config's: the key, and ``expected`` in
        YAML's words. YAML's ``true`` is not taken for the integer 1.
        """
        constraints = owner._parameter_constraints[name]
        refused = isinstance(value, bool) and "boolean" not in constraints
        try:
            validate_parameter_constraints(
                {name: constraints}, {name: value}, caller_name=owner.__name__
            )
        except InvalidParameterError:
            refused = True
        if refused:
            self.fail(key, f"expected {expected}, got {show(value)}.")
        return value

    def param_value(self, key: str, cls: type, fixed: dict, name: str, value) -> None:
        """Check one parameter value the way the estimator's ``fit`` will."""
        estimator = cls(**{**fixed, name: value})
        try:
            estimator._validate_params()
            estimator._hidden_layer_sizes()
            if name == "device":
                resolve_device(value)
        except (ValueError, TypeError) as exc:
            self.fail(key, f"invalid value {show(plain_value(value))}: {exc}")


def show(value) -> str:
    """Quote a value the way it reads in YAML-ish text."""
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k}: {show(v)}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


def listed(names) -> str:
    """Names as a comma-separated list."""
    return ", ".join(str(n) for n in names)


def did_you_mean(value, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or nothing."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
