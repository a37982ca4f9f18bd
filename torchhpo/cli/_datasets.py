"""Load a config's dataset: a bundled scikit-learn dataset, a CSV / Parquet / NPY
file, or a scikit-learn generator; and read feature tables for ``torchhpo predict``.

Files are read without pickle (``numpy.load(allow_pickle=False)``). With
``preprocessing: auto`` the features are a pandas DataFrame of the raw columns
(CSV and Parquet read by pandas, missing cells as NaN, string columns as ``str``
objects), which the run's ``ColumnTransformer`` encodes per fold; otherwise they
are a float64 matrix (CSV read with the standard library, every feature numeric).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils.multiclass import type_of_target

from ._config import (
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
    """

    X: Any
    y: np.ndarray
    feature_names: list[str]
    target_name: str
    label: str
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)

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
    elif tabular or spec.file.suffix.lower() == ".parquet":
        dataset = _load_table(spec.file, spec.target, classification, tabular)
    else:
        dataset = _load_csv(spec.file, spec.target, classification)
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


def read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """Return the header and the cells (as strings) of a CSV file with a header row.

    Raises
    ------
    ConfigError
        If the file is empty or its rows differ in length from the header.
    """
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if len(rows) < 2:
        raise ConfigError(
            "dataset.file",
            f"{path.name} needs a header row and at least one data row.",
        )
    header = [name.strip() for name in rows[0]]
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ConfigError(
                "dataset.file",
                f"{path.name}, line {line}: {len(row)} cells, but the header has "
                f"{len(header)} columns.",
            )
    return header, np.array(rows[1:], dtype=str)


def numeric_columns(path: Path, header: list[str], cells: np.ndarray) -> np.ndarray:
    """Return the cells as float64, naming the first non-numeric cell otherwise."""
    try:
        return cells.astype(np.float64)
    except ValueError:
        pass
    for j, name in enumerate(header):
        for i, cell in enumerate(cells[:, j]):
            try:
                float(cell)
            except ValueError:
                raise ConfigError(
                    "dataset.file",
                    f"{path.name}, line {i + 2}, column {name!r}: {str(cell)!r} "
                    "is not a number; features must be numeric.",
                ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _load_csv(path: Path, target: str | int, classification: bool) -> Dataset:
    header, cells = read_csv(path)
    if isinstance(target, str):
        if target not in header:
            raise ConfigError(
                "dataset.target",
                f"no column {target!r} in {path.name}; its columns are "
                f"{', '.join(header)}.",
            )
        index = header.index(target)
    else:
        if not -len(header) <= target < len(header):
            raise ConfigError(
                "dataset.target",
                f"column index {target} is out of range for {path.name}, which has "
                f"{len(header)} columns.",
            )
        index = target % len(header)
    features = [j for j in range(len(header)) if j != index]
    names = [header[j] for j in features]
    X = numeric_columns(path, names, cells[:, features])
    y = _labels(cells[:, index], classification, header[index])
    return Dataset(X, y, names, header[index], path.name)


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
    """Read a CSV (header row) or Parquet file into a DataFrame.

    Missing cells (empty, ``NA``, ``nan``, ...) become NaN; column names are
    stripped of surrounding spaces.

    Raises
    ------
    ConfigError
        (under ``key``) if the file cannot be parsed, or Parquet has no reader.
    """
    pd = _pandas()
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, skipinitialspace=True)
    except ImportError as exc:
        raise ConfigError(
            key,
            f"reading {path.name} needs a Parquet engine for pandas: pip install "
            "pyarrow (or 'torchhpo[parquet]').",
        ) from exc
    except (ValueError, OSError) as exc:
        raise ConfigError(key, f"cannot read {path.name}: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise ConfigError(key, f"{path.name} has no data rows.")
    return frame.reset_index(drop=True)


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


def _load_table(path: Path, target, classification: bool, tabular: bool) -> Dataset:
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
    column = frame[name]
    missing = np.flatnonzero(np.asarray(column.isna()))
    if len(missing):
        rows = ", ".join(str(i + 2) for i in missing[:5])
        raise ConfigError(
            "dataset.target",
            f"column {name!r} of {path.name} has {len(missing)} missing values "
            f"(lines {rows}{' ...' if len(missing) > 5 else ''}); drop those rows "
            "or fill them in.",
        )
    raw = np.asarray(column, dtype=object if not is_numeric_column(column) else None)
    y = _labels(raw.astype(str) if raw.dtype == object else raw, classification, name)
    features = frame.drop(columns=[name])
    names = list(features.columns)
    numeric = [c for c in names if is_numeric_column(features[c])]
    categorical = [c for c in names if c not in numeric]
    if not tabular:
        if categorical:
            raise ConfigError(
                "dataset.file",
                f"{path.name}: column {categorical[0]!r} is not numeric; with "
                "preprocessing: standardize or none every feature must be numeric "
                "(preprocessing: auto one-hot encodes string columns).",
            )
        X = features.to_numpy(dtype=np.float64)
        holes = [c for j, c in enumerate(names) if np.isnan(X[:, j]).any()]
        if holes:
            raise ConfigError(
                "dataset.file",
                f"{path.name}: column {holes[0]!r} has missing values; "
                "preprocessing: auto imputes them.",
            )
        return Dataset(X, y, names, name, path.name)
    X = feature_frame(features, numeric, categorical)
    return Dataset(X, y, names, name, path.name, numeric, categorical)


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
