"""Checks of a config's ``dataset`` and ``tracking`` sections."""

from __future__ import annotations

import importlib.util
import inspect
from dataclasses import replace
from pathlib import Path
from typing import Any

from ._check_base import Checker, listed, show
from ._schema import (
    BUNDLED_DATASETS,
    DATA_SUFFIXES,
    DATASET_COLUMN_KEYS,
    SYNTHETIC_DATASETS,
    DatasetSpec,
)


class DataChecks(Checker):
    """Where the data comes from, which columns are used, where runs are tracked."""

    def dataset(self, raw) -> DatasetSpec:
        """Check ``dataset``: one source (a name, a file, a generator), its columns."""
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
                f"{listed(sources) or 'none'}.",
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
                    f"expected a non-empty list of column names, got {show(names)}.",
                )
            if len(set(names)) != len(names):
                repeated = sorted({n for n in names if names.count(n) > 1})
                self.fail(f"dataset.{key}", f"repeats {listed(repeated)}.")
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
                    "dataset.groups", f"expected a column name, got {show(groups)}."
                )
            if groups == dataset.target:
                self.fail("dataset.groups", f"{groups!r} is the target column.")
            checked["groups"] = groups
        return checked

    def data_file(self, spec: dict) -> DatasetSpec:
        """Check ``dataset.file`` (found, of a known kind) and its ``target``."""
        written = spec["file"]
        if not isinstance(written, str) or not written:
            self.fail("dataset.file", f"expected a file path, got {show(written)}.")
        path = Path(written).expanduser()
        if not path.is_absolute():
            path = self.source.parent / path
        path = path.resolve()
        if path.suffix.lower() not in DATA_SUFFIXES:
            self.fail(
                "dataset.file",
                f"{written!r} is not a .csv, .parquet or .npy file; expected one "
                f"of {listed(DATA_SUFFIXES)}.",
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
                f"expected a column index for a .npy file, got {show(target)}.",
            )
        if not (is_index or (isinstance(target, str) and target)):
            self.fail(
                "dataset.target",
                f"expected a column name or index, got {show(target)}.",
            )
        return DatasetSpec(file=path, target=target)

    def synthetic(self, spec: dict) -> DatasetSpec:
        """Check ``dataset.synthetic`` and the generator's ``options``."""
        name = self.choice("dataset.synthetic", spec["synthetic"], SYNTHETIC_DATASETS)
        options = spec.get("options") or {}
        accepted = tuple(inspect.signature(SYNTHETIC_DATASETS[name]).parameters)
        options = self.mapping("dataset.options", options, accepted)
        options.setdefault("random_state", 0)
        return DatasetSpec(synthetic=name, options=options)

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
                f"expected true, false or a folder, got {show(board)}.",
            )
        if board is not False:
            out["tensorboard"] = board
        use_mlflow = spec.get("mlflow", False)
        if not isinstance(use_mlflow, bool):
            self.fail(
                "tracking.mlflow", f"expected true or false, got {show(use_mlflow)}."
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
