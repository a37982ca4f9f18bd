"""What a run config may hold: the tables of its choices and the checked records.

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


:func:`~torchhpo.cli._config.load_config` reads and checks a file into a
:class:`RunConfig`; anything it refuses is a :class:`ConfigError` naming the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from sklearn import datasets as sk_datasets
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    ShuffleSplit,
    StratifiedKFold,
    StratifiedShuffleSplit,
)

from .._device import resolve_device
from ..neural_network import MLPClassifier, MLPRegressor


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

#: Keys of ``search`` only an Optuna search takes (:mod:`~torchhpo.cli._optuna`).
OPTUNA_KEYS = (
    "n_trials",
    "timeout",
    "sampler",
    "pruner",
    "max_iter",
    "storage",
    "study_name",
)
SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "hyperband", "successive_halving", "none")


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
        check_device("--device", device, self.source)
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
                "params": {k: plain_value(v) for k, v in self.params.items()},
            },
            search=search,
        )
        if self.tracking:
            config["tracking"] = dict(self.tracking)
        return config


def check_device(key: str, device, source: Path) -> None:
    """Refuse a device this machine cannot use (``cuda`` without CUDA)."""
    try:
        resolve_device(device)
    except ValueError as exc:
        raise ConfigError(key, str(exc), source) from exc


# -- value forms --------------------------------------------------------------------
def python_value(name: str, value):
    """Return a config value in the estimator's form (layer-size lists as tuples)."""
    if name == "hidden_layer_sizes" and isinstance(value, list):
        return tuple(value)
    return value


def plain_value(value):
    """Return a value in YAML / JSON form (tuples as lists)."""
    if isinstance(value, tuple):
        return [plain_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _space_to_config(values):
    if isinstance(values, Distribution):
        return values.to_config()
    return [plain_value(v) for v in values]
