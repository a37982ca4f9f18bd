"""The input columns a run trained on, and how ``torchhpo predict`` matches them.

A model predicts from positions, so a file whose columns are in another order, or
renamed, would be answered silently wrong. Every run folder therefore records its
input columns in ``columns.json`` (names in training order, each column's kind
``numeric`` or ``string`` and the dtype it was read with, the target's name and
the columns left out by ``dataset.drop`` / ``dataset.groups``), and
:func:`read_features` holds every prediction file against that record, whatever the
run's preprocessing:

* a table (CSV or Parquet, read with pandas) must hold exactly the recorded
  columns, by name (the target and the left-out columns may be present and are
  ignored); they are
  reordered into the training order, and a missing or extra column is an error that
  names it;
* a CSV's first row is its header. When no cell of that row is a recorded name and
  some cell is a number, the file has most likely no header, and reading it as one
  would lose a row of data: that is an error unless ``header=False``
  (``--no-header``), which reads every row as data, the columns in training order;
* a ``.npy`` array has no names: only its column count can be checked;
* numeric columns must hold numbers (the first cell that does not is named, with
  its line); without ``preprocessing: auto`` they must not have holes either.

Run folders written before ``columns.json`` existed carry the names in
``model.json`` (:func:`load_record` falls back to it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS_FILE = "columns.json"
COLUMNS_FORMAT = "torchhpo-columns/1"
NUMERIC, STRING = "numeric", "string"
#: Names shown in full in an error message; longer lists are cut.
_SHOWN = 8


class ColumnsError(ValueError):
    """A prediction file whose columns do not match the ones the model trained on."""


@dataclass(frozen=True)
class ColumnRecord:
    """The input columns of a run, in training order.

    Attributes
    ----------
    names : list of str
        Feature column names, in the order the model takes them.
    kinds : list of {"numeric", "string"}
        Per column: numbers, or strings (one-hot encoded by ``preprocessing:
        auto``).
    dtypes : list of str
        Per column, the dtype the training data was read with (``float64``,
        ``int64``, ``object`` ...).
    target : str or None
        The target column's name (it may appear in a prediction file).
    ignored : list of str
        Other columns of the training data that are not features
        (``dataset.drop``, ``dataset.groups``): a prediction file may hold them.
    """

    names: list[str]
    kinds: list[str]
    dtypes: list[str] = field(default_factory=list)
    target: str | None = None
    ignored: list[str] = field(default_factory=list)

    @classmethod
    def from_dataset(cls, dataset) -> ColumnRecord:
        """Return the record of a loaded :class:`~torchhpo.cli._datasets.Dataset`."""
        names = [str(n) for n in dataset.feature_names]
        strings = set(dataset.categorical)
        kinds = [STRING if n in strings else NUMERIC for n in names]
        X = dataset.X
        if isinstance(X, pd.DataFrame):
            dtypes = [str(X[n].dtype) for n in names]
        else:
            dtypes = [str(np.asarray(X).dtype)] * len(names)
        ignored = [str(n) for n in getattr(dataset, "ignored", [])]
        return cls(names, kinds, dtypes, dataset.target_name, ignored)

    def to_json(self) -> dict:
        """Return the ``columns.json`` content."""
        return {
            "format": COLUMNS_FORMAT,
            "target": self.target,
            "ignored": list(self.ignored),
            "columns": [
                {"name": n, "kind": k, "dtype": d}
                for n, k, d in zip(
                    self.names,
                    self.kinds,
                    self.dtypes or [None] * len(self.names),
                    strict=True,
                )
            ],
        }

    @classmethod
    def from_json(cls, data: dict) -> ColumnRecord:
        """Read a ``columns.json`` content.

        Raises
        ------
        ValueError
            If ``data`` is not in this format.
        """
        if not isinstance(data, dict) or data.get("format") != COLUMNS_FORMAT:
            raise ValueError(f"not a {COLUMNS_FORMAT} record")
        columns = data["columns"]
        return cls(
            [str(c["name"]) for c in columns],
            [str(c["kind"]) for c in columns],
            [str(c["dtype"]) for c in columns],
            data.get("target"),
            [str(n) for n in data.get("ignored") or []],
        )

    @property
    def numeric(self) -> list[str]:
        """The numeric columns, in training order."""
        return [n for n, k in zip(self.names, self.kinds, strict=True) if k == NUMERIC]


def load_record(folder: Path, info: dict) -> ColumnRecord:
    """Return a run folder's column record.

    Parameters
    ----------
    folder : Path
        The run folder.
    info : dict
        The ``"data"`` section of its ``model.json`` (the fallback for run folders
        written before ``columns.json``).

    Raises
    ------
    ColumnsError
        If ``columns.json`` exists but cannot be read.
    """
    path = Path(folder) / COLUMNS_FILE
    if path.is_file():
        try:
            return ColumnRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ColumnsError(f"{path} is damaged ({exc}).") from exc
    names = [str(n) for n in info.get("feature_names") or []]
    strings = set(info.get("categorical") or [])
    kinds = [STRING if n in strings else NUMERIC for n in names]
    return ColumnRecord(names, kinds, [], info.get("target"))


def _listed(names) -> str:
    names = [repr(str(n)) for n in names]
    more = f" ... ({len(names)} in all)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _is_number(value) -> bool:
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return True
    try:
        float(str(value))
    except ValueError:
        return False
    return True


def looks_like_data(header: list[str], record: ColumnRecord) -> bool:
    """Whether a header row is more likely the first row of data.

    True when none of its cells is a column name the model knows (features or
    target) and at least one of them is a number, which column names rarely are.
    """
    known = {*record.names, *record.ignored, record.target}
    if any(name in known for name in header):
        return False
    return any(_is_number(name) for name in header)


def read_table(path: Path, *, header: bool = True) -> pd.DataFrame:
    """Read a CSV or Parquet file with pandas, every cell as written.

    Column names are stripped of surrounding spaces; without ``header`` the
    columns are numbered from 0 and every row is data.

    Raises
    ------
    ColumnsError
        If the file cannot be parsed, or has no data rows.
    """
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(
                path, skipinitialspace=True, header=0 if header else None
            )
    except ImportError as exc:
        raise ColumnsError(
            f"reading {path.name} needs a Parquet engine for pandas: pip install "
            "pyarrow (or 'torchhpo[parquet]')."
        ) from exc
    except (ValueError, OSError) as exc:
        raise ColumnsError(f"cannot read {path.name}: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise ColumnsError(f"{path.name} has no data rows.")
    return frame.reset_index(drop=True)


def match_columns(frame: pd.DataFrame, record: ColumnRecord, name: str) -> pd.DataFrame:
    """Return ``frame``'s feature columns in training order, or name what differs.

    Parameters
    ----------
    frame : DataFrame
        The prediction file's table, columns by name.
    record : ColumnRecord
    name : str
        The file's name, for messages.

    Raises
    ------
    ColumnsError
        If a training column is missing, or a column other than the target is not
        one the model was trained on.
    """
    columns = list(frame.columns)
    missing = [n for n in record.names if n not in columns]
    allowed = {*record.names, *record.ignored, record.target}
    extra = [c for c in columns if c not in allowed]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    problems = []
    if missing:
        problems.append(f"lacks the model's columns {_listed(missing)}")
    if extra:
        problems.append(f"has columns the model was not trained on {_listed(extra)}")
    if duplicated:
        problems.append(f"repeats the columns {_listed(duplicated)}")
    if problems:
        others = [n for n in (record.target, *record.ignored) if n is not None]
        may = f" ({_listed(others)} may be present and are ignored)" if others else ""
        raise ColumnsError(
            f"{name} {' and '.join(problems)}; expected the columns "
            f"{_listed(record.names)}{may}, by name, in any order."
        )
    return frame[record.names]


def check_values(
    frame: pd.DataFrame,
    record: ColumnRecord,
    name: str,
    *,
    first_line: int,
    holes: bool,
) -> None:
    """Refuse text in a numeric column and, unless ``holes``, missing cells.

    Parameters
    ----------
    frame : DataFrame
        The matched feature columns.
    record : ColumnRecord
    name : str
        The file's name, for messages.
    first_line : int
        The file's line number of the first row (2 after a header row).
    holes : bool
        Whether missing cells are allowed (``preprocessing: auto`` imputes them).

    Raises
    ------
    ColumnsError
        Naming the column, the line and the value.
    """
    for column in record.numeric:
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(
            values
        ):
            for i, value in enumerate(values):
                if not pd.isna(value) and not _is_number(value):
                    raise ColumnsError(
                        f"{name}, line {i + first_line}, column {column!r}: "
                        f"{str(value)!r} is not a number; the model was trained on "
                        "this column as numeric."
                    )
        if not holes:
            missing = np.flatnonzero(np.asarray(values.isna()))
            if len(missing):
                raise ColumnsError(
                    f"{name}, line {missing[0] + first_line}, column {column!r}: "
                    "missing value; this model's preprocessing does not impute "
                    "(preprocessing: auto does)."
                )


def read_features(
    path: Path, record: ColumnRecord, *, header: bool = True, holes: bool = False
) -> pd.DataFrame:
    """Read a prediction file's features, matched to the training columns.

    Parameters
    ----------
    path : Path
        A ``.csv`` or ``.parquet`` file.
    record : ColumnRecord
        The run's input columns.
    header : bool
        Whether the CSV's first row names its columns. Without it, every row is
        data and the columns are taken in training order (exactly as many as the
        model's features).
    holes : bool
        Allow missing cells in numeric columns (``preprocessing: auto``).

    Returns
    -------
    DataFrame
        The feature columns in training order; numeric columns as float64.

    Raises
    ------
    ColumnsError
        If the columns do not match by name (or, without a header, by count), if
        the first row looks like data while read as a header, or for a value a
        numeric column cannot take.
    """
    frame = read_table(path, header=header)
    n_features = len(record.names)
    if not header:
        if frame.shape[1] != n_features:
            raise ColumnsError(
                f"{path.name} has {frame.shape[1]} columns; without a header row "
                f"the columns must be the model's {n_features} features in "
                f"training order ({_listed(record.names)}), without the target."
            )
        frame.columns = record.names
        matched = frame
    else:
        if path.suffix.lower() == ".csv" and looks_like_data(
            list(frame.columns), record
        ):
            raise ColumnsError(
                f"the first row of {path.name} looks like data, not a header: "
                f"none of its cells ({_listed(frame.columns)}) names one of the "
                f"model's columns ({_listed(record.names)}). Add a header row, or "
                "pass --no-header (header=False) to read every row as data, the "
                "columns in training order."
            )
        matched = match_columns(frame, record, path.name)
    check_values(matched, record, path.name, first_line=2 if header else 1, holes=holes)
    result = matched.copy()
    for column in record.numeric:
        result[column] = pd.to_numeric(result[column]).astype(np.float64)
    return result


def check_array(array: np.ndarray, record: ColumnRecord, name: str) -> None:
    """Check a ``.npy`` array's column count (it has no names to check).

    Raises
    ------
    ColumnsError
        If the count differs from the model's features.
    """
    if array.shape[1] != len(record.names):
        raise ColumnsError(
            f"{name} has {array.shape[1]} columns; the model takes "
            f"{len(record.names)} features ({_listed(record.names)})."
        )
