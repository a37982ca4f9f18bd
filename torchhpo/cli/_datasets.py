"""Load a config's dataset: a bundled scikit-learn dataset, a CSV / Parquet / NPY
file, or a scikit-learn generator.

CSV and Parquet files are read by pandas, ``.npy`` files without pickle
(``numpy.load(allow_pickle=False)``). ``dataset.columns`` / ``dataset.drop``
choose the feature columns and ``dataset.groups`` takes a column out as group
labels. With ``preprocessing: auto`` the features are a DataFrame of the raw
columns (missing cells as NaN, string columns as ``str`` objects), which the run's
``ColumnTransformer`` encodes per fold, and a string column whose values are nearly
all distinct (an identifier, free text) is warned about by name; otherwise they are
a float64 matrix, every feature numeric.
"""

from __future__ import annotations

import difflib
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils.multiclass import type_of_target

from . import _columns
from ._schema import (
    BUNDLED_DATASETS,
    REGRESSION_DATASETS,
    SYNTHETIC_DATASETS,
    ConfigError,
    DatasetSpec,
)


@dataclass
class Dataset:
    """Features and target, ready for a search.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features), float64, or DataFrame
        A DataFrame of the raw columns with ``preprocessing: auto``.
    y : ndarray of shape (n_samples,)
        Class labels (int or str) or real values.
    feature_names : list of str
    target_name : str
    label : str
        Short name for messages (``digits``, ``houses.csv``).
    numeric, categorical : list of str
        The numeric and the string feature columns (``preprocessing: auto``).
    groups : ndarray of shape (n_samples,) or None
        Group labels for a group splitter (``dataset.groups``).
    ignored : list of str
        Columns of the data left out of the features (``dataset.drop``, the
        columns ``dataset.columns`` does not keep, ``dataset.groups``).
    """

    X: Any
    y: np.ndarray
    feature_names: list[str]
    target_name: str
    label: str
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    groups: np.ndarray | None = None
    ignored: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """Return ``digits: 1797 samples x 64 features, 10 classes``-style text."""
        n, d = self.X.shape
        text = f"{self.label}: {n} samples x {d} features"
        if self.categorical:
            text += f" ({len(self.categorical)} categorical)"
        if type_of_target(self.y) in ("binary", "multiclass"):
            text += f", {len(np.unique(self.y))} classes"
        return text

    def as_table(self) -> Dataset:
        """Return the dataset with X as a DataFrame of numeric columns (``auto``)."""
        if self.numeric or self.categorical:
            return self
        frame = numeric_frame(self.X, self.feature_names)
        return replace(self, X=frame, numeric=list(self.feature_names))


def load_dataset(
    spec: DatasetSpec, *, classification: bool, tabular: bool = False
) -> Dataset:
    """Load the dataset a config names.

    Parameters
    ----------
    spec : DatasetSpec
        The checked ``dataset`` section.
    classification : bool
        Whether the estimator is a classifier: file targets are read as labels
        (integers where every value is one, else strings) instead of numbers.
    tabular : bool
        ``preprocessing: auto``: return X as a DataFrame of the raw columns, string
        columns and missing values allowed.

    Raises
    ------
    ConfigError
        If a file's target column is missing, a feature is not numeric, or a
        classifier is given a continuous target.
    """
    if spec.name is not None:
        bunch = BUNDLED_DATASETS[spec.name]()
        names = [str(n) for n in getattr(bunch, "feature_names", [])]
        dataset = Dataset(
            np.asarray(bunch.data, dtype=np.float64),
            np.asarray(bunch.target),
            names or _default_names(bunch.data.shape[1]),
            "target",
            spec.name,
        )
    elif spec.synthetic is not None:
        try:
            X, y = SYNTHETIC_DATASETS[spec.synthetic](**spec.options)
        except (ValueError, TypeError) as exc:
            raise ConfigError("dataset.options", str(exc)) from exc
        dataset = Dataset(
            np.asarray(X, dtype=np.float64),
            np.asarray(y),
            _default_names(X.shape[1]),
            "target",
            spec.synthetic,
        )
    elif spec.file.suffix.lower() == ".npy":
        dataset = _load_npy(spec.file, spec.target, classification)
    else:
        dataset = _load_table(spec, classification, tabular)
    if spec.file is None or spec.file.suffix.lower() == ".npy":
        dataset = _select_array_columns(dataset, spec)
    if tabular:
        dataset = dataset.as_table()
    quantity = spec.name in REGRESSION_DATASETS or spec.synthetic == "make_regression"
    if classification and (quantity or type_of_target(dataset.y) == "continuous"):
        raise ConfigError(
            "estimator.class",
            f"MLPClassifier needs class labels, but the target of {dataset.label} "
            "is a continuous quantity; use MLPRegressor for it.",
        )
    return dataset


def _default_names(n_features: int) -> list[str]:
    return [f"x{i}" for i in range(n_features)]


def _labels(values: np.ndarray, classification: bool, column: str) -> np.ndarray:
    """Return target values as numbers (regression) or labels (classification)."""
    try:
        numbers = values.astype(np.float64)
    except ValueError:
        if not classification:
            raise ConfigError(
                "dataset.target",
                f"column {column!r} holds non-numeric values; MLPRegressor needs "
                "numbers.",
            ) from None
        return values.astype(str)
    if classification and np.all(np.isfinite(numbers)):
        if np.all(numbers == np.round(numbers)):
            return numbers.astype(np.int64)
    return numbers


def _load_npy(path: Path, target: int, classification: bool) -> Dataset:
    array = load_npy(path)
    n_columns = array.shape[1]
    if not -n_columns <= target < n_columns:
        raise ConfigError(
            "dataset.target",
            f"column index {target} is out of range for {path.name}, which has "
            f"{n_columns} columns.",
        )
    index = target % n_columns
    X = np.delete(array, index, axis=1).astype(np.float64)
    y = _labels(array[:, index], classification, f"column {index}")
    return Dataset(X, y, _default_names(X.shape[1]), f"column {index}", path.name)


def load_npy(path: Path) -> np.ndarray:
    """Read a 2-D numeric ``.npy`` array, never unpickling objects."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ConfigError(
            "dataset.file", f"{path.name} is not a numeric .npy array: {exc}"
        ) from exc
    if array.ndim != 2 or array.dtype.kind not in "biuf":
        raise ConfigError(
            "dataset.file",
            f"{path.name} holds a {array.ndim}-D {array.dtype} array; expected a "
            "2-D numeric array (rows = samples).",
        )
    return array


# -- tables (pandas) ----------------------------------------------------------------
def _pandas():
    try:
        import pandas
    except ImportError as exc:  # pragma: no cover - pandas is a dependency
        raise ConfigError(
            "preprocessing", "preprocessing: auto and Parquet files need pandas."
        ) from exc
    return pandas


def read_table(path: Path, key: str = "dataset.file"):
    """Read a CSV (header row) or Parquet file into a DataFrame, with pandas.

    Missing cells (empty, ``NA``, ``nan``, ...) become NaN; column names are
    stripped of surrounding spaces.

    Raises
    ------
    ConfigError
        (under ``key``) if the file cannot be parsed, or Parquet has no reader.
    """
    try:
        return _columns.read_table(path)
    except _columns.ColumnsError as exc:
        raise ConfigError(key, str(exc)) from exc


def numeric_frame(array: np.ndarray, names: list[str]):
    """Return a numeric matrix as a float64 DataFrame with the given column names."""
    return _pandas().DataFrame(np.asarray(array, dtype=np.float64), columns=names)


def is_numeric_column(column) -> bool:
    """Whether a DataFrame column is numeric (booleans count as categories)."""
    pd = _pandas()
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(
        column
    )


def categorical_values(column) -> np.ndarray:
    """Return a column as an object array of ``str`` values, NaN where missing."""
    missing = np.asarray(column.isna())
    values = np.asarray(column, dtype=object)
    return np.array(
        [np.nan if m else str(v) for v, m in zip(values, missing, strict=True)],
        dtype=object,
    )


def _load_table(spec: DatasetSpec, classification: bool, tabular: bool) -> Dataset:
    """Read a CSV or Parquet file (pandas): target, groups, then the features."""
    path, target = spec.file, spec.target
    frame = read_table(path)
    header = list(frame.columns)
    if isinstance(target, str):
        if target not in header:
            raise ConfigError(
                "dataset.target",
                f"no column {target!r} in {path.name}; its columns are "
                f"{', '.join(header)}.",
            )
        name = target
    else:
        if not -len(header) <= target < len(header):
            raise ConfigError(
                "dataset.target",
                f"column index {target} is out of range for {path.name}, which has "
                f"{len(header)} columns.",
            )
        name = header[target % len(header)]
    y = _target(frame[name], classification, name, path)
    features = frame.drop(columns=[name])
    groups = None
    if spec.groups is not None:
        _check_names("dataset.groups", [spec.groups], list(features.columns), path)
        groups = _target(frame[spec.groups], True, spec.groups, path, "groups")
        features = features.drop(columns=[spec.groups])
    names = _selected(spec, list(features.columns), name, path.name)
    ignored = [c for c in header if c not in names and c != name]
    features = features[names]
    numeric = [c for c in names if is_numeric_column(features[c])]
    categorical = [c for c in names if c not in numeric]
    if not tabular:
        if categorical:
            column = categorical[0]
            line, value = _first_text(features[column])
            raise ConfigError(
                "dataset.file",
                f"{path.name}, line {line}, column {column!r}: {value!r} is not a "
                "number; with preprocessing: standardize or none every feature must "
                "be numeric (preprocessing: auto one-hot encodes string columns; "
                "dataset.drop leaves a column out).",
            )
        X = features.to_numpy(dtype=np.float64)
        holes = [c for j, c in enumerate(names) if np.isnan(X[:, j]).any()]
        if holes:
            raise ConfigError(
                "dataset.file",
                f"{path.name}: column {holes[0]!r} has missing values; "
                "preprocessing: auto imputes them.",
            )
        return Dataset(X, y, names, name, path.name, groups=groups, ignored=ignored)
    _warn_identifiers(features, categorical, path.name)
    X = feature_frame(features, numeric, categorical)
    return Dataset(X, y, names, name, path.name, numeric, categorical, groups, ignored)


def _target(column, classification: bool, name: str, path: Path, key="target"):
    """Return a column as labels or numbers; refuse missing values, naming lines."""
    missing = np.flatnonzero(np.asarray(column.isna()))
    if len(missing):
        rows = ", ".join(str(i + 2) for i in missing[:5])
        raise ConfigError(
            f"dataset.{key}",
            f"column {name!r} of {path.name} has {len(missing)} missing values "
            f"(lines {rows}{' ...' if len(missing) > 5 else ''}); drop those rows "
            "or fill them in.",
        )
    raw = np.asarray(column, dtype=object if not is_numeric_column(column) else None)
    return _labels(
        raw.astype(str) if raw.dtype == object else raw, classification, name
    )


def _first_text(column) -> tuple[int, str]:
    """Return the file line (after the header) and value of a column's first
    non-number."""
    for i, value in enumerate(column):
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                return i + 2, value
        elif isinstance(value, bool | np.bool_):
            return i + 2, str(value)
    return 2, str(column.iloc[0])


def _check_names(key: str, names, available: list[str], where: Path | str) -> None:
    label = where.name if isinstance(where, Path) else where
    for name in names:
        if name not in available:
            close = difflib.get_close_matches(name, available, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            shown = ", ".join(available[:12]) + (" ..." if len(available) > 12 else "")
            raise ConfigError(
                key, f"no column {name!r} in {label}{hint}; its columns are {shown}."
            )


def _selected(spec: DatasetSpec, names: list[str], target: str, label: str):
    """Apply ``dataset.columns`` / ``dataset.drop`` to the feature names."""
    for key, chosen in (("columns", spec.columns), ("drop", spec.drop)):
        if chosen and target in chosen:
            raise ConfigError(
                f"dataset.{key}",
                f"{target!r} is the target column (dataset.target), not a feature.",
            )
        if chosen and spec.groups in chosen:
            raise ConfigError(
                f"dataset.{key}",
                f"{spec.groups!r} is the groups column (dataset.groups), not a "
                "feature.",
            )
        _check_names(f"dataset.{key}", chosen or (), names, label)
    if spec.columns is not None:
        names = [n for n in names if n in spec.columns]
    names = [n for n in names if n not in spec.drop]
    if not names:
        raise ConfigError(
            "dataset.drop" if spec.drop else "dataset.columns",
            f"leaves no feature column in {label}.",
        )
    return names


def _select_array_columns(dataset: Dataset, spec: DatasetSpec) -> Dataset:
    """Apply ``dataset.columns`` / ``dataset.drop`` to a matrix dataset."""
    if spec.columns is None and not spec.drop:
        return dataset
    names = _selected(spec, dataset.feature_names, dataset.target_name, dataset.label)
    index = [dataset.feature_names.index(n) for n in names]
    ignored = [n for n in dataset.feature_names if n not in names]
    return replace(dataset, X=dataset.X[:, index], feature_names=names, ignored=ignored)


#: A string column whose distinct values are at least this share of its filled
#: rows (and at least :data:`IDENTIFIER_MIN_VALUES` of them) is probably an
#: identifier or free text: one-hot encoding it learns nothing that carries over.
IDENTIFIER_SHARE = 0.9
IDENTIFIER_MIN_VALUES = 10


def _warn_identifiers(frame, categorical: list[str], label: str) -> None:
    """Warn about string columns whose values are nearly all distinct."""
    for column in categorical:
        values = frame[column].dropna()
        n_distinct = values.nunique()
        if n_distinct >= IDENTIFIER_MIN_VALUES and n_distinct >= IDENTIFIER_SHARE * len(
            values
        ):
            warnings.warn(
                f"dataset: column {column!r} of {label} is text whose values are "
                f"nearly all distinct ({n_distinct} of {len(values)} rows): an "
                "identifier, free text or a date? preprocessing: auto one-hot "
                f"encodes it into {n_distinct} columns that do not generalise; "
                f"leave it out with dataset.drop: [{column}].",
                UserWarning,
                stacklevel=2,
            )


def feature_frame(frame, numeric: list[str], categorical: list[str]):
    """Return ``frame``'s feature columns: numeric as float64, the others as ``str``
    objects with NaN where missing (the forms the ``auto`` preprocessing takes)."""
    pd = _pandas()
    columns = {c: frame[c].astype(np.float64) for c in numeric}
    for c in categorical:
        columns[c] = pd.Series(
            categorical_values(frame[c]), index=frame.index, dtype=object
        )
    return pd.DataFrame({c: columns[c] for c in [*numeric, *categorical]}).reindex(
        columns=[c for c in frame.columns if c in columns]
    )
