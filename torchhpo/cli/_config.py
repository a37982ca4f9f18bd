"""Run configs: read a YAML file with a safe loader and check every key before work.

A config is a mapping (see ``torchhpo/configs/`` for complete examples)::

    dataset: digits              # {name: digits} | {file: data.csv, target: label}
                                 # | {synthetic: make_classification, options: {...}}
                                 # (files: .csv, .parquet or .npy); also
                                 # drop: [id, notes] or columns: [a, b] (features),
                                 # groups: COLUMN (for group_kfold)
    preprocessing: standardize   # or auto (the default for files), or none
    estimator:
      class: MLPClassifier       # or MLPRegressor
      params: {random_state: 0}  # fixed parameters
    search:
      kind: grid                 # or random, halving_grid, halving_random, optuna
      space:                     # lists of values; sampled kinds take distributions
        hidden_layer_sizes: [[50, 50], [100]]
        alpha: {loguniform: [1e-5, 1e-1]}
      cv: 5                      # or {kind: kfold, n_splits: 5, shuffle: true,
                                 # random_state: 0}; stratified_kfold, group_kfold,
                                 # shuffle_split, ... (see SPLITTERS)
      scoring: null              # a scikit-learn scorer name; null: estimator.score
      n_iter: 10                 # random only
      random_state: 0            # random only (the sampling seed)
      factor: 3                  # halving only (and resource, max_resources,
                                 # min_resources, aggressive_elimination;
                                 # n_candidates for halving_random)

:func:`load_config` returns a :class:`RunConfig`, or raises :class:`ConfigError`
with a message that names the key (``search.space.alpha``) and says what was
expected. Nothing is loaded or trained before the whole config has passed.

Overrides from the command line (``search.cv=3``, ``estimator.params.max_iter=50``,
``search.space.alpha='{loguniform: [1e-5, 1e-2]}'``) set one key each, the value
read as YAML, before the config is checked: an override is checked as if it had
been written in the file.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import stats
from sklearn import datasets as sk_datasets
from sklearn.metrics import get_scorer_names
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    ShuffleSplit,
    StratifiedKFold,
    StratifiedShuffleSplit,
)

from .. import configs as bundled_configs
from .._device import resolve_device
from ..neural_network import MLPClassifier, MLPRegressor
from ._optuna import OPTUNA_KEYS
from ._optuna import check_options as optuna_options


class ConfigError(ValueError):
    """A config that cannot be run: the message names the key and what was expected.

    Parameters
    ----------
    key : str
        Dotted path of the offending key (``search.space.alpha``), or ``""`` for
        the config as a whole.
    message : str
        What is wrong and what was expected.
    source : Path, optional
        The config file.
    """

    def __init__(self, key: str, message: str, source: Path | None = None):
        self.key = key
        self.message = message
        self.source = source
        where = f"{source}: " if source is not None else ""
        super().__init__(f"{where}{key}: {message}" if key else f"{where}{message}")


#: Estimator names a config may use.
ESTIMATORS: dict[str, type] = {
    "MLPClassifier": MLPClassifier,
    "MLPRegressor": MLPRegressor,
}

#: scikit-learn's bundled datasets a config may name.
BUNDLED_DATASETS: dict[str, Callable] = {
    "digits": sk_datasets.load_digits,
    "iris": sk_datasets.load_iris,
    "wine": sk_datasets.load_wine,
    "breast_cancer": sk_datasets.load_breast_cancer,
    "diabetes": sk_datasets.load_diabetes,
}

#: Bundled datasets whose target is a quantity, not a class (integer-valued or not).
REGRESSION_DATASETS = frozenset({"diabetes"})

#: scikit-learn's dataset generators a config may name.
SYNTHETIC_DATASETS: dict[str, Callable] = {
    "make_classification": sk_datasets.make_classification,
    "make_regression": sk_datasets.make_regression,
}

PREPROCESSING = ("auto", "standardize", "none")
#: ``dataset`` keys that choose columns, for every kind of dataset.
DATASET_COLUMN_KEYS = ("drop", "columns", "groups")
SEARCH_KINDS = ("grid", "random", "halving_grid", "halving_random", "optuna")
#: Kinds whose space may hold distributions (candidates are sampled).
SAMPLED_KINDS = ("random", "halving_random", "optuna")
#: Options of the halving kinds, with scikit-learn's defaults per kind.
HALVING_OPTIONS = {
    "factor": 3,
    "resource": "n_samples",
    "max_resources": "auto",
    "min_resources": {"halving_grid": "exhaust", "halving_random": "smallest"},
    "aggressive_elimination": False,
}
DATA_SUFFIXES = (".csv", ".parquet", ".npy")

#: scikit-learn's splitters ``search.cv: {kind: ..., <options>}`` may name; their
#: options are their constructors' parameters.
SPLITTERS: dict[str, type] = {
    "kfold": KFold,
    "stratified_kfold": StratifiedKFold,
    "group_kfold": GroupKFold,
    "shuffle_split": ShuffleSplit,
    "stratified_shuffle_split": StratifiedShuffleSplit,
    "group_shuffle_split": GroupShuffleSplit,
}
#: Splitters that need ``dataset.groups``.
GROUP_SPLITTERS = ("group_kfold", "group_shuffle_split")


@dataclass(frozen=True)
class _DistributionKind:
    """How ``{kind: [low, high]}`` becomes a scipy distribution."""

    make: Callable[[Any, Any], Any]
    expected: str
    integer: bool = False
    positive: bool = False


#: ``{name: [low, high]}`` forms of a random search's distributions.
DISTRIBUTIONS: dict[str, _DistributionKind] = {
    "loguniform": _DistributionKind(
        stats.loguniform,
        "[low, high] with 0 < low < high (log-uniform on [low, high])",
        positive=True,
    ),
    "uniform": _DistributionKind(
        lambda low, high: stats.uniform(low, high - low),
        "[low, high] with low < high (uniform on [low, high])",
    ),
    "randint": _DistributionKind(
        stats.randint,
        "[low, high] integers with low < high (an integer low <= k < high)",
        integer=True,
    ),
}


@dataclass(frozen=True)
class Distribution:
    """A random search distribution written as ``{kind: [low, high]}``."""

    kind: str
    low: float
    high: float

    def rv(self):
        """Return the frozen scipy distribution (it has ``rvs``)."""
        return DISTRIBUTIONS[self.kind].make(self.low, self.high)

    def to_config(self) -> dict:
        """Return the config form, ``{kind: [low, high]}``."""
        return {self.kind: [self.low, self.high]}


@dataclass(frozen=True)
class CVSpec:
    """A scikit-learn splitter named in ``search.cv``, with its options.

    Attributes
    ----------
    kind : str
        A key of :data:`SPLITTERS`.
    options : dict
        Keyword arguments of the splitter (``n_splits``, ``shuffle``,
        ``random_state``, ``test_size`` ...).
    """

    kind: str
    options: dict = field(default_factory=dict)

    def splitter(self):
        """Return the scikit-learn splitter."""
        return SPLITTERS[self.kind](**self.options)

    @property
    def n_splits(self) -> int:
        """The number of (train, test) splits it makes."""
        return self.splitter().get_n_splits()

    def to_config(self) -> dict:
        """Return the config form, ``{kind: ..., **options}``."""
        return {"kind": self.kind, **self.options}


@dataclass(frozen=True)
class DatasetSpec:
    """Where the data comes from: exactly one of ``name``, ``file``, ``synthetic``.

    Attributes
    ----------
    name : str or None
        A bundled scikit-learn dataset (:data:`BUNDLED_DATASETS`).
    file : Path or None
        An absolute path to a ``.csv`` (with a header row), ``.parquet`` or
        ``.npy`` file.
    target : str or int or None
        The target column of ``file``: a column name (CSV, Parquet) or index.
    synthetic : str or None
        A generator of :data:`SYNTHETIC_DATASETS`, called with ``options``.
    options : dict
        Keyword arguments of the generator.
    drop : tuple of str
        Feature columns left out (identifiers, free text, dates).
    columns : tuple of str or None
        The feature columns kept (all but the target when None).
    groups : str or None
        A file's column of group labels for a group splitter (not a feature).
    """

    name: str | None = None
    file: Path | None = None
    target: str | int | None = None
    synthetic: str | None = None
    options: dict = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    columns: tuple[str, ...] | None = None
    groups: str | None = None

    def to_config(self) -> dict:
        """Return the config form (the file path absolute)."""
        if self.name is not None:
            config = {"name": self.name}
        elif self.file is not None:
            config = {"file": str(self.file), "target": self.target}
        else:
            config = {"synthetic": self.synthetic, "options": dict(self.options)}
        if self.drop:
            config["drop"] = list(self.drop)
        if self.columns is not None:
            config["columns"] = list(self.columns)
        if self.groups is not None:
            config["groups"] = self.groups
        return config

    def label(self) -> str:
        """Return a short name for messages and plot titles."""
        if self.name is not None:
            return self.name
        if self.file is not None:
            return self.file.name
        return str(self.synthetic)


@dataclass(frozen=True)
class RunConfig:
    """A checked config, values in Python form (tuples, :class:`Distribution`).

    Attributes
    ----------
    source : Path
        The config file.
    dataset : DatasetSpec
    preprocessing : {"auto", "standardize", "none"}
        ``auto`` (the default for data files): impute, standardize numeric
        columns, one-hot encode string columns; ``standardize`` (the default
        otherwise): a StandardScaler.
    estimator : {"MLPClassifier", "MLPRegressor"}
    params : dict
        Fixed estimator parameters.
    kind : {"grid", "random", "optuna"}
    space : dict
        Parameter name -> list of values, or :class:`Distribution` (random only).
    cv : int or CVSpec
        Number of folds (scikit-learn's default splitter for the estimator), or
        a named splitter with its options.
    scoring : str or None
        A scikit-learn scorer name; None scores with the estimator's ``score``.
    n_iter : int or None
        Candidates sampled (random only).
    random_state : int or None
        Seed of the candidate sampling (random kinds), of the halving subsamples, or
        of the sampler (optuna).
    description : str or None
        Free text, kept in the run folder.
    halving : dict
        The halving kinds' options (``factor``, ``resource``, ``max_resources``,
        ``min_resources``, ``aggressive_elimination``, ``n_candidates``).
    optuna : dict or None
        An Optuna search's options (``n_trials``, ``sampler``, ``pruner``,
        ``max_iter``, ``timeout``, ``storage``, ``study_name``).
    tracking : dict
        Where the run is also recorded (:mod:`~torchhpo.cli._tracking`):
        ``tensorboard`` (a log folder, or True for ``<run folder>/tensorboard``),
        ``mlflow`` (True: the search logged to the current MLflow tracking URI),
        ``top`` (candidates whose loss curves are written, 5).
    overrides : tuple of str
        The command line's ``key.path=value`` overrides applied to the file.
    """

    source: Path
    dataset: DatasetSpec
    preprocessing: str
    estimator: str
    params: dict
    kind: str
    space: dict
    cv: int | CVSpec
    scoring: str | None
    n_iter: int | None = None
    random_state: int | None = None
    description: str | None = None
    halving: dict = field(default_factory=dict)
    optuna: dict | None = None
    overrides: tuple[str, ...] = ()
    tracking: dict = field(default_factory=dict)

    @property
    def estimator_class(self) -> type:
        return ESTIMATORS[self.estimator]

    def splitter(self):
        """Return ``cv`` as scikit-learn's ``check_cv`` takes it (int or splitter)."""
        return self.cv.splitter() if isinstance(self.cv, CVSpec) else self.cv

    @property
    def n_splits(self) -> int:
        """The number of CV splits each candidate is scored on."""
        return self.cv.n_splits if isinstance(self.cv, CVSpec) else self.cv

    def with_device(self, device: str | None) -> RunConfig:
        """Return the config with ``estimator.params.device`` set (None: unchanged).

        Raises
        ------
        ConfigError
            If the device cannot be used on this machine.
        """
        if device is None:
            return self
        _check_device("--device", device, self.source)
        return replace(self, params={**self.params, "device": device})

    def to_config(self) -> dict:
        """Return the config as run: YAML-ready, defaults filled, paths absolute."""
        search: dict[str, Any] = {
            "kind": self.kind,
            "space": {name: _space_to_config(v) for name, v in self.space.items()},
            "cv": self.cv.to_config() if isinstance(self.cv, CVSpec) else self.cv,
            "scoring": self.scoring,
        }
        if self.kind == "random":
            search["n_iter"] = self.n_iter
        if self.kind != "grid":
            search["random_state"] = self.random_state
        search.update(self.halving)
        if self.kind == "optuna":
            search.update(self.optuna, random_state=self.random_state)
        config: dict[str, Any] = {}
        if self.description is not None:
            config["description"] = self.description
        config.update(
            dataset=self.dataset.to_config(),
            preprocessing=self.preprocessing,
            estimator={
                "class": self.estimator,
                "params": {k: _plain(v) for k, v in self.params.items()},
            },
            search=search,
        )
        if self.tracking:
            config["tracking"] = dict(self.tracking)
        return config


# -- YAML ---------------------------------------------------------------------------
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


# -- checks -------------------------------------------------------------------------
class _Checker:
    """Check one config file; every error names its key."""

    def __init__(self, source: Path):
        self.source = source

    def fail(self, key: str, message: str):
        raise ConfigError(key, message, self.source)

    def mapping(self, key: str, value, allowed: tuple, required: tuple = ()) -> dict:
        if not isinstance(value, Mapping):
            self.fail(
                key or "config",
                f"expected a mapping with keys {_names(allowed)}, got {_show(value)}.",
            )
        for name in value:
            if name not in allowed:
                where = f"{key}.{name}" if key else str(name)
                self.fail(
                    where,
                    f"unknown key{_did_you_mean(name, allowed)}; expected one of "
                    f"{_names(allowed)}.",
                )
        for name in required:
            if name not in value:
                where = f"{key}.{name}" if key else name
                self.fail(where, "missing; this key is required.")
        return dict(value)

    def choice(self, key: str, value, choices) -> str:
        if not isinstance(value, str) or value not in choices:
            self.fail(
                key,
                f"unknown value {_show(value)}{_did_you_mean(value, choices)}; "
                f"expected one of {_names(choices)}.",
            )
        return value

    def integer(self, key: str, value, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {_show(value)}.")
        if minimum is not None and value < minimum:
            self.fail(key, f"expected an integer >= {minimum}, got {value}.")
        return value

    # -- sections ---------------------------------------------------------------
    def config(self, raw) -> RunConfig:
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
            self.fail("description", f"expected text, got {_show(description)}.")
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

    def tracking(self, raw) -> dict:
        """The ``tracking`` section; a tool that is not installed fails here."""
        if raw is None:
            return {}
        spec = self.mapping("tracking", raw, ("tensorboard", "mlflow", "top"))
        out: dict[str, Any] = {}
        board = spec.get("tensorboard", False)
        if not isinstance(board, bool | str) or board == "":
            self.fail(
                "tracking.tensorboard",
                f"expected true, false or a folder, got {_show(board)}.",
            )
        if board is not False:
            out["tensorboard"] = board
        use_mlflow = spec.get("mlflow", False)
        if not isinstance(use_mlflow, bool):
            self.fail(
                "tracking.mlflow", f"expected true or false, got {_show(use_mlflow)}."
            )
        if use_mlflow:
            out["mlflow"] = True
        out["top"] = self.integer("tracking.top", spec.get("top", 5), minimum=1)
        for key, module in (("tensorboard", "tensorboard"), ("mlflow", "mlflow")):
            if key in out and importlib.util.find_spec(module) is None:
                self.fail(
                    f"tracking.{key}",
                    f"needs the {module} package: pip install 'torchhpo[tracking]'.",
                )
        return out if len(out) > 1 else {}

    def dataset(self, raw) -> DatasetSpec:
        if isinstance(raw, str):
            raw = {"name": raw}
        spec = self.mapping(
            "dataset",
            raw,
            ("name", "file", "target", "synthetic", "options", *DATASET_COLUMN_KEYS),
        )
        sources = [k for k in ("name", "file", "synthetic") if k in spec]
        if len(sources) != 1:
            self.fail(
                "dataset",
                "expected exactly one of 'name' (a bundled dataset), 'file' (a "
                ".csv, .parquet or .npy file) or 'synthetic', got "
                f"{_names(sources) or 'none'}.",
            )
        source = sources[0]
        extra = {"name": ("target", "options"), "file": ("options",)}.get(
            source, ("target",)
        )
        for key in extra:
            if key in spec:
                self.fail(f"dataset.{key}", f"not used with dataset.{source}.")
        if source == "name":
            dataset = DatasetSpec(
                name=self.choice("dataset.name", spec["name"], BUNDLED_DATASETS)
            )
        elif source == "file":
            dataset = self.data_file(spec)
        else:
            dataset = self.synthetic(spec)
        return replace(dataset, **self.dataset_columns(spec, dataset))

    def dataset_columns(self, spec: dict, dataset: DatasetSpec) -> dict:
        """Check ``dataset.drop`` / ``columns`` / ``groups`` (names are checked
        against the data when it is read)."""
        checked: dict[str, Any] = {}
        if "drop" in spec and "columns" in spec:
            self.fail(
                "dataset.columns",
                "give dataset.columns (the features to keep) or dataset.drop (the "
                "columns to leave out), not both.",
            )
        for key in ("drop", "columns"):
            if key not in spec:
                continue
            names = spec[key]
            if isinstance(names, str):
                names = [names]
            if (
                not isinstance(names, list)
                or not names
                or not all(isinstance(n, str) and n for n in names)
            ):
                self.fail(
                    f"dataset.{key}",
                    f"expected a non-empty list of column names, got {_show(names)}.",
                )
            if len(set(names)) != len(names):
                repeated = sorted({n for n in names if names.count(n) > 1})
                self.fail(f"dataset.{key}", f"repeats {_names(repeated)}.")
            checked[key] = tuple(names)
        if "groups" in spec:
            groups = spec["groups"]
            tables = dataset.file is not None and dataset.file.suffix.lower() in (
                ".csv",
                ".parquet",
            )
            if not tables:
                self.fail(
                    "dataset.groups",
                    "needs dataset.file, a .csv or .parquet file with a column of "
                    "group labels.",
                )
            if not isinstance(groups, str) or not groups:
                self.fail(
                    "dataset.groups", f"expected a column name, got {_show(groups)}."
                )
            if groups == dataset.target:
                self.fail("dataset.groups", f"{groups!r} is the target column.")
            checked["groups"] = groups
        return checked

    def data_file(self, spec: dict) -> DatasetSpec:
        written = spec["file"]
        if not isinstance(written, str) or not written:
            self.fail("dataset.file", f"expected a file path, got {_show(written)}.")
        path = Path(written).expanduser()
        if not path.is_absolute():
            path = self.source.parent / path
        path = path.resolve()
        if path.suffix.lower() not in DATA_SUFFIXES:
            self.fail(
                "dataset.file",
                f"{written!r} is not a .csv, .parquet or .npy file; expected one "
                f"of {_names(DATA_SUFFIXES)}.",
            )
        if not path.is_file():
            self.fail(
                "dataset.file",
                f"file not found: {written!r} (looked for {path}; relative paths "
                "are read from the config file's folder).",
            )
        if "target" not in spec:
            self.fail(
                "dataset.target",
                "missing; name the target column (a column name or a column index).",
            )
        target = spec["target"]
        is_index = isinstance(target, int) and not isinstance(target, bool)
        if path.suffix.lower() == ".npy" and not is_index:
            self.fail(
                "dataset.target",
                f"expected a column index for a .npy file, got {_show(target)}.",
            )
        if not (is_index or (isinstance(target, str) and target)):
            self.fail(
                "dataset.target",
                f"expected a column name or index, got {_show(target)}.",
            )
        return DatasetSpec(file=path, target=target)

    def synthetic(self, spec: dict) -> DatasetSpec:
        name = self.choice("dataset.synthetic", spec["synthetic"], SYNTHETIC_DATASETS)
        options = spec.get("options") or {}
        accepted = tuple(inspect.signature(SYNTHETIC_DATASETS[name]).parameters)
        options = self.mapping("dataset.options", options, accepted)
        options.setdefault("random_state", 0)
        return DatasetSpec(synthetic=name, options=options)

    def estimator(self, raw) -> tuple[str, dict]:
        spec = self.mapping("estimator", raw, ("class", "params"), ("class",))
        name = self.choice("estimator.class", spec["class"], ESTIMATORS)
        cls = ESTIMATORS[name]
        raw_params = spec.get("params") or {}
        accepted = tuple(cls().get_params())
        raw_params = self.mapping("estimator.params", raw_params, accepted)
        params = {}
        for key, value in raw_params.items():
            value = _python(key, value)
            self.param_value(f"estimator.params.{key}", cls, {}, key, value)
            params[key] = value
        return name, params

    def param_value(self, key: str, cls: type, fixed: dict, name: str, value) -> None:
        """Check one parameter value the way the estimator's ``fit`` will."""
        estimator = cls(**{**fixed, name: value})
        try:
            estimator._validate_params()
            estimator._hidden_layer_sizes()
            if name == "device":
                resolve_device(value)
        except (ValueError, TypeError) as exc:
            self.fail(key, f"invalid value {_show(_plain(value))}: {exc}")

    def search(self, raw, cls: type, params: dict) -> dict:
        spec = self.mapping(
            "search",
            raw,
            (
                "kind",
                "space",
                "cv",
                "scoring",
                "n_iter",
                "random_state",
                "n_candidates",
                *HALVING_OPTIONS,
                *OPTUNA_KEYS,
            ),
            ("kind", "space"),
        )
        kind = self.choice("search.kind", spec["kind"], SEARCH_KINDS)
        for key in OPTUNA_KEYS if kind != "optuna" else ("n_iter",):
            if key in spec:
                self.fail(
                    f"search.{key}",
                    "only used by kind: optuna."
                    if kind != "optuna"
                    else "kind: optuna takes n_trials, not n_iter.",
                )
        if kind == "grid":
            for key in ("n_iter", "random_state"):
                if key in spec:
                    self.fail(
                        f"search.{key}",
                        "only used by kind: random (a grid tries every "
                        "combination); the estimator's seed goes in "
                        "estimator.params.random_state.",
                    )
        if kind != "random" and "n_iter" in spec:
            self.fail(
                "search.n_iter",
                f"only used by kind: random; kind: {kind} "
                + (
                    "samples search.n_candidates."
                    if kind == "halving_random"
                    else "tries every combination."
                ),
            )
        halving = self.halving(spec, kind)
        if halving.get("resource", "n_samples") in spec["space"]:
            self.fail(
                f"search.space.{halving['resource']}",
                "is the halving resource (search.resource): the iterations set it; "
                "it cannot also be searched.",
            )
        space = self.space(spec["space"], kind, cls, params)
        cv = self.cv(spec.get("cv", 5))
        scoring = spec.get("scoring")
        if scoring is not None and scoring not in get_scorer_names():
            self.fail(
                "search.scoring",
                f"unknown scorer {_show(scoring)}"
                f"{_did_you_mean(scoring, get_scorer_names())}; expected null (the "
                "estimator's score) or a name from "
                "sklearn.metrics.get_scorer_names(), such as accuracy, f1_macro, "
                "r2 or neg_mean_squared_error.",
            )
        result: dict[str, Any] = {
            "kind": kind,
            "space": space,
            "cv": cv,
            "scoring": scoring,
        }
        if kind == "optuna":
            result["optuna"] = optuna_options(self, spec, params)
        if kind == "random":
            result["n_iter"] = self.integer(
                "search.n_iter", spec.get("n_iter", 10), minimum=1
            )
        if kind != "grid":
            random_state = spec.get("random_state")
            if random_state is not None:
                random_state = self.integer("search.random_state", random_state, 0)
            result["random_state"] = random_state
        result["halving"] = halving
        return result

    def cv(self, raw) -> int | CVSpec:
        """Check ``search.cv``: a number of folds, or a splitter with options."""
        example = "{kind: kfold, n_splits: 5, shuffle: true, random_state: 0}"
        if not isinstance(raw, Mapping):
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 2:
                self.fail(
                    "search.cv",
                    f"expected an integer >= 2, got {_show(raw)}; or a splitter "
                    f"such as {example}.",
                )
            return raw
        if "kind" not in raw:
            self.fail(
                "search.cv.kind",
                f"missing; name a splitter, one of {_names(SPLITTERS)} "
                f"(as in {example}).",
            )
        kind = self.choice("search.cv.kind", raw["kind"], SPLITTERS)
        cls = SPLITTERS[kind]
        accepted = tuple(inspect.signature(cls).parameters)
        options = self.mapping("search.cv", raw, ("kind", *accepted))
        del options["kind"]
        try:
            cls(**options)
        except (ValueError, TypeError) as exc:
            self.fail("search.cv", f"{cls.__name__}{_show(options)} refused: {exc}")
        n_splits = options.get("n_splits")
        if n_splits is not None:
            self.integer("search.cv.n_splits", n_splits, minimum=2)
        return CVSpec(kind, options)

    def cv_fits(self, cv, dataset: DatasetSpec, estimator: str) -> None:
        """Cross-check the splitter with the dataset and the estimator."""
        kind = cv.kind if isinstance(cv, CVSpec) else None
        if kind in GROUP_SPLITTERS and dataset.groups is None:
            self.fail(
                "search.cv.kind",
                f"{kind} splits by groups; name their column in dataset.groups.",
            )
        if dataset.groups is not None and kind not in GROUP_SPLITTERS:
            self.fail(
                "dataset.groups",
                f"only used by a group splitter (search.cv.kind: "
                f"{' or '.join(GROUP_SPLITTERS)}).",
            )
        if (
            kind is not None
            and kind.startswith("stratified")
            and (estimator == "MLPRegressor")
        ):
            self.fail(
                "search.cv.kind",
                f"{kind} stratifies by class; MLPRegressor's target is a quantity: "
                "use kfold or shuffle_split.",
            )

    def halving(self, spec: dict, kind: str) -> dict:
        """Check the halving options (scikit-learn's defaults filled in)."""
        names = [*HALVING_OPTIONS, "n_candidates"]
        if not kind.startswith("halving"):
            for name in names:
                if name in spec:
                    self.fail(
                        f"search.{name}",
                        "only used by kind: halving_grid or halving_random.",
                    )
            return {}
        if kind == "halving_grid" and "n_candidates" in spec:
            self.fail(
                "search.n_candidates",
                "only used by kind: halving_random (a grid's candidates are its "
                "combinations).",
            )
        options = {}
        for name, default in HALVING_OPTIONS.items():
            if isinstance(default, dict):
                default = default[kind]
            options[name] = spec.get(name, default)
        if kind == "halving_random":
            options["n_candidates"] = spec.get("n_candidates", "exhaust")
        factor = options["factor"]
        if isinstance(factor, bool) or not isinstance(factor, int | float):
            self.fail("search.factor", f"expected a number > 1, got {_show(factor)}.")
        if not factor > 1:
            self.fail("search.factor", f"expected a number > 1, got {factor}.")
        if not isinstance(options["resource"], str):
            self.fail(
                "search.resource",
                "expected n_samples or an estimator parameter such as max_iter, got "
                f"{_show(options['resource'])}.",
            )
        resource = options["resource"]
        if resource != "n_samples" and resource not in MLPClassifier().get_params():
            self.fail(
                "search.resource",
                "expected n_samples or an estimator parameter such as max_iter, got "
                f"{_show(resource)}"
                f"{_did_you_mean(resource, MLPClassifier().get_params())}.",
            )
        bounds = {
            "max_resources": ("auto",),
            "min_resources": ("exhaust", "smallest"),
            "n_candidates": ("exhaust",),
        }
        for name, words in bounds.items():
            if name not in options:
                continue
            value = options[name]
            if isinstance(value, str):
                if value not in words:
                    self.fail(
                        f"search.{name}",
                        f"expected an integer >= 1 or "
                        f"{' or '.join(words)}, got {_show(value)}.",
                    )
            else:
                self.integer(f"search.{name}", value, minimum=1)
        if resource != "n_samples" and options["max_resources"] == "auto":
            self.fail(
                "search.max_resources",
                f"expected an integer with resource: {resource} (auto means the "
                "number of samples, for resource: n_samples).",
            )
        if not isinstance(options["aggressive_elimination"], bool):
            self.fail(
                "search.aggressive_elimination",
                "expected true or false, got "
                f"{_show(options['aggressive_elimination'])}.",
            )
        return options

    def space(self, raw, kind: str, cls: type, params: dict) -> dict:
        accepted = tuple(cls().get_params())
        if not isinstance(raw, Mapping):
            self.fail(
                "search.space",
                "expected a mapping of parameter names to lists of values (or, for "
                f"kind: random, distributions), got {_show(raw)}.",
            )
        space = self.mapping("search.space", raw, accepted)
        if not space:
            self.fail(
                "search.space", "empty; expected at least one parameter to search."
            )
        checked = {}
        for name, values in space.items():
            key = f"search.space.{name}"
            if name in params:
                self.fail(
                    key,
                    f"also fixed in estimator.params.{name}; a parameter is either "
                    "fixed or searched.",
                )
            if isinstance(values, Mapping):
                checked[name] = self.distribution(key, values, kind, cls, params, name)
                continue
            if not isinstance(values, list) or not values:
                expected = "a non-empty list of values"
                if kind in SAMPLED_KINDS:
                    expected += " or a distribution such as {loguniform: [1e-5, 1e-1]}"
                self.fail(key, f"expected {expected}, got {_show(values)}.")
            values = [_python(name, value) for value in values]
            for i, value in enumerate(values):
                self.param_value(f"{key}[{i}]", cls, params, name, value)
            checked[name] = values
        return checked

    def distribution(
        self, key: str, raw: Mapping, kind: str, cls: type, params: dict, name: str
    ) -> Distribution:
        if kind not in SAMPLED_KINDS:
            self.fail(
                key,
                f"a distribution ({_show(dict(raw))}) needs search.kind: random or "
                f"halving_random; kind: {kind} takes a list of values.",
            )
        if len(raw) != 1:
            self.fail(
                key,
                f"expected one distribution such as {{loguniform: [1e-5, 1e-1]}}, "
                f"got {_show(dict(raw))}.",
            )
        ((dist_name, bounds),) = raw.items()
        if dist_name not in DISTRIBUTIONS:
            self.fail(
                key,
                f"unknown distribution {_show(dist_name)}"
                f"{_did_you_mean(dist_name, DISTRIBUTIONS)}; expected one of "
                f"{_names(DISTRIBUTIONS)}, or a list of values.",
            )
        form = DISTRIBUTIONS[dist_name]
        numbers_ok = (
            isinstance(bounds, list)
            and len(bounds) == 2
            and all(
                isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds
            )
        )
        if numbers_ok and form.integer:
            numbers_ok = all(isinstance(b, int) for b in bounds)
        if numbers_ok:
            low, high = bounds
            numbers_ok = (
                bool(np.isfinite([low, high]).all())
                and low < high
                and (low > 0 or not form.positive)
            )
        if not numbers_ok:
            self.fail(
                f"{key}.{dist_name}",
                f"expected {form.expected}, got {_show(bounds)}.",
            )
        distribution = Distribution(dist_name, *bounds)
        value = distribution.rv().rvs(random_state=np.random.RandomState(0))
        value = value.item() if hasattr(value, "item") else value
        estimator = cls(**{**params, name: value})
        try:
            estimator._validate_params()
        except (ValueError, TypeError) as exc:
            self.fail(
                key,
                f"{_show(distribution.to_config())} draws values {name} cannot take "
                f"(drew {value!r}): {exc}",
            )
        return distribution


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
    config = _Checker(source).config(raw)
    return replace(config, overrides=tuple(overrides))


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
                    f"cannot set it: {where} is {_show(child)}, not a mapping.",
                    source,
                )
            node = child
        node[keys[-1]] = value
    return raw


def _copy_mappings(value):
    if isinstance(value, Mapping):
        return {k: _copy_mappings(v) for k, v in value.items()}
    return value


def _check_device(key: str, device, source: Path) -> None:
    """Refuse a device this machine cannot use (``cuda`` without CUDA)."""
    try:
        resolve_device(device)
    except ValueError as exc:
        raise ConfigError(key, str(exc), source) from exc


# -- value forms --------------------------------------------------------------------
def _python(name: str, value):
    """Return a config value in the estimator's form (layer-size lists as tuples)."""
    if name == "hidden_layer_sizes" and isinstance(value, list):
        return tuple(value)
    return value


def _plain(value):
    """Return a value in YAML / JSON form (tuples as lists)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _space_to_config(values):
    if isinstance(values, Distribution):
        return values.to_config()
    return [_plain(v) for v in values]


def _show(value) -> str:
    """Quote a value the way it reads in YAML-ish text."""
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{k}: {_show(v)}" for k, v in value.items())
        return "{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return repr(value)


def _names(names) -> str:
    return ", ".join(str(n) for n in names)


def _did_you_mean(value, choices) -> str:
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, [str(c) for c in choices], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
