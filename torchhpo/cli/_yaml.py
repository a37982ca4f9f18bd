"""Reading a config: YAML with a safe loader, and the command line's overrides.

Overrides from the command line (``search.cv=3``, ``estimator.params.max_iter=50``,
``search.space.alpha='{loguniform: [1e-5, 1e-2]}'``) set one key each, the value
read as YAML, before the config is checked: an override is checked as if it had
been written in the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ._check_base import show
from ._schema import ConfigError


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, also reading ``1e-5`` as a float (YAML 1.2).

    YAML 1.1, which PyYAML implements, wants a dot in a float, so ``1e-5`` would be
    the string ``"1e-5"``; configs write learning rates and penalties that way.
    """


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_yaml(path: Path) -> Any:
    """Parse ``path`` with a safe loader (no Python objects are ever built)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read the config file: {exc.strerror}.") from exc
    try:
        return yaml.load(text, Loader=_SafeLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError("", f"not valid YAML{where}: {problem}.", path) from exc


def apply_overrides(raw, overrides: Sequence[str], source: Path | None = None):
    """Return the parsed config with each ``key.path=value`` override set.

    Raises
    ------
    ConfigError
        For an override that is not ``key.path=value``, a value that is not
        valid YAML, or a path through a value that is not a mapping.
    """
    if not overrides:
        return raw
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        return raw  # the checks report the file itself
    raw = _copy_mappings(raw)
    for override in overrides:
        path, sep, text = override.partition("=")
        keys = path.strip().split(".")
        if not sep or not all(keys):
            raise ConfigError(
                "",
                f"override {override!r}: expected KEY.PATH=VALUE, such as "
                "search.cv=3 or estimator.params.max_iter=50.",
                source,
            )
        key = ".".join(keys)
        try:
            value = yaml.load(text, Loader=_SafeLoader) if text.strip() else None
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(
                key,
                f"the override value {text!r} is not valid YAML: {problem}.",
                source,
            ) from exc
        if keys == ["dataset", "file"] and isinstance(value, str) and value:
            value = str(Path(value).expanduser().resolve())  # from the shell's folder
        node = raw
        for depth, name in enumerate(keys[:-1]):
            child = node.get(name)
            if child is None:
                child = node[name] = {}
            if keys[: depth + 1] == ["dataset"] and isinstance(child, str):
                child = node[name] = {"name": child}  # dataset: digits
            if not isinstance(child, dict):
                where = ".".join(keys[: depth + 1])
                raise ConfigError(
                    key,
                    f"cannot set it: {where} is {show(child)}, not a mapping.",
                    source,
                )
            node = child
        node[keys[-1]] = value
    return raw


def _copy_mappings(value):
    if isinstance(value, Mapping):
        return {k: _copy_mappings(v) for k, v in value.items()}
    return value
