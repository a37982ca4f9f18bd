"""Run configs: read a YAML file with a safe loader and check every key before work.

:func:`load_config` reads the file (:mod:`~torchhpo.cli._yaml`, the command line's
overrides applied), checks it section by section (:mod:`~torchhpo.cli._check_data`,
:mod:`~torchhpo.cli._check_search`) and returns a
:class:`~torchhpo.cli._schema.RunConfig`, or raises
:class:`~torchhpo.cli._schema.ConfigError` with a message that names the key
(``search.space.alpha``) and says what was expected. Nothing is loaded or trained
before the whole config has passed. What a config may hold is
:mod:`~torchhpo.cli._schema`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from .. import configs as bundled_configs
from ._check_base import show
from ._check_data import DataChecks
from ._check_search import SearchChecks
from ._schema import ESTIMATORS, PREPROCESSING, ConfigError, RunConfig, python_value
from ._yaml import apply_overrides, read_yaml

__all__ = ["ConfigError", "RunConfig", "load_config"]


class ConfigChecker(DataChecks, SearchChecks):
    """Check one config file, section by section; every error names its key."""

    def config(self, raw) -> RunConfig:
        """Check the whole config; return it in Python form."""
        if raw is None:
            self.fail(
                "",
                "the config is empty; expected a mapping with keys "
                "dataset, estimator and search.",
            )
        top = self.mapping(
            "",
            raw,
            (
                "description",
                "dataset",
                "preprocessing",
                "estimator",
                "search",
                "tracking",
            ),
            ("dataset", "estimator", "search"),
        )
        description = top.get("description")
        if description is not None and not isinstance(description, str):
            self.fail("description", f"expected text, got {show(description)}.")
        dataset = self.dataset(top["dataset"])
        default = "auto" if dataset.file is not None else "standardize"
        preprocessing = self.choice(
            "preprocessing", top.get("preprocessing", default), PREPROCESSING
        )
        estimator, params = self.estimator(top["estimator"])
        search = self.search(top["search"], ESTIMATORS[estimator], params)
        self.cv_fits(search["cv"], dataset, estimator)
        return RunConfig(
            source=self.source,
            dataset=dataset,
            preprocessing=preprocessing,
            estimator=estimator,
            params=params,
            description=description,
            tracking=self.tracking(top.get("tracking")),
            **search,
        )

    def estimator(self, raw) -> tuple[str, dict]:
        """Check ``estimator``: its class, and each fixed parameter by the class."""
        spec = self.mapping("estimator", raw, ("class", "params"), ("class",))
        name = self.choice("estimator.class", spec["class"], ESTIMATORS)
        cls = ESTIMATORS[name]
        raw_params = spec.get("params") or {}
        accepted = tuple(cls().get_params())
        raw_params = self.mapping("estimator.params", raw_params, accepted)
        params = {}
        for key, value in raw_params.items():
            value = python_value(key, value)
            self.param_value(f"estimator.params.{key}", cls, {}, key, value)
            params[key] = value
        return name, params


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read and check a run config.

    Parameters
    ----------
    path : str or Path
        A YAML file (read with a safe loader), or the name of a config shipped
        with torchhpo (``seed_grid``; see :mod:`torchhpo.configs`), used when no
        such file exists.
    overrides : sequence of str
        ``key.path=value`` settings applied to the file's contents before the
        checks (the value is read as YAML; missing sections are created). A
        relative ``dataset.file`` given here is read from the current folder.

    Returns
    -------
    RunConfig
        The checked config; data files resolved to absolute paths.

    Raises
    ------
    ConfigError
        For a missing or unparsable file, an unknown key, a bad value or
        distribution, a missing data file or an unknown dataset; the message names
        the key and says what was expected.
    """
    source = Path(path)
    if not source.is_file():
        source = bundled_configs.find(str(path))
        if source is None:
            raise ConfigError(
                "",
                f"config file not found: {str(path)!r} "
                f"({bundled_configs.suggest(str(path))}).",
            )
    source = source.resolve()
    raw = apply_overrides(read_yaml(source), overrides, source)
    config = ConfigChecker(source).config(raw)
    return replace(config, overrides=tuple(overrides))
