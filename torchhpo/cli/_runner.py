"""What the two commands do: ``run`` a config, ``predict`` with a run's model.

:func:`run` checks everything it can before training (the config, the data, the
run folder), runs the search, then writes the run folder and prints the summary.
It returns the fitted search, so Python code (and the tests) can hold the run's
in-memory results next to what was written.
"""

from __future__ import annotations

import csv
import datetime as dt
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from sklearn.base import is_classifier

from .. import __version__
from .._device import resolve_device
from ..search import CheckpointError
from ._build import build_search, count_candidates
from ._config import ConfigError, RunConfig, load_config
from ._datasets import (
    Dataset,
    feature_frame,
    is_numeric_column,
    load_dataset,
    load_npy,
    numeric_columns,
    numeric_frame,
    read_csv,
    read_table,
)
from ._model_io import load_model, load_model_info, save_model, split_model
from ._plots import plots_available, write_plots
from ._recorder import LossCurveRecorder
from ._report import plain_cv_results, summary
from ._runs import RunFolder, check_out_dir


class CommandError(ValueError):
    """A user-facing error of a command (bad input file, existing output)."""


@dataclass
class RunResult:
    """One finished run.

    Attributes
    ----------
    folder : Path
        The run folder.
    config : RunConfig
        The config as run.
    dataset : Dataset
    search : GridSearchCV or RandomizedSearchCV
        The fitted search (``best_estimator_`` is the saved model).
    recorder : LossCurveRecorder
        The fold models' loss curves.
    seconds : float
        Wall time of ``search.fit``.
    files : list of Path
        Files written into the run folder.
    """

    folder: Path
    config: RunConfig
    dataset: Dataset
    search: object
    recorder: LossCurveRecorder
    seconds: float
    files: list[Path]


def default_out(config: RunConfig) -> Path:
    """``runs/<config file name>`` in the current folder."""
    return Path("runs") / config.source.stem


def _with_source(error: ConfigError, config: RunConfig) -> ConfigError:
    if error.source is not None:
        return error
    return ConfigError(error.key, error.message, config.source)


def run(
    config_path: str | Path,
    *,
    out: str | Path | None = None,
    device: str | None = None,
    force: bool = False,
    progress: bool = True,
    plots: bool = True,
    top: int = 5,
    stdout: TextIO | None = None,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    overrides: Sequence[str] = (),
) -> RunResult:
    """Run the search a config describes and write its run folder.

    Parameters
    ----------
    config_path : str or Path
        The YAML config.
    out : str or Path, optional
        The run folder; default ``runs/<config name>``.
    device : str, optional
        Training device for every model (overrides ``estimator.params.device``).
    force : bool
        Overwrite an existing run folder.
    progress : bool
        Show the search's progress bar.
    plots : bool
        Write the PNG plots (needs matplotlib; skipped with a note without it).
    top : int
        Candidates shown in the leaderboard.
    stdout : text stream, optional
        Where the summary goes (default ``sys.stdout``).
    checkpoint : str or Path, optional
        Journal file for the search's finished models (the search's
        ``checkpoint``); it must not exist yet unless ``resume``.
    resume : bool
        Continue from the existing ``checkpoint`` journal: only the models it
        lacks are trained.
    overrides : sequence of str
        ``key.path=value`` settings over the config file (values in YAML), checked
        like the file and recorded in the run folder's ``config.yaml``.

    Returns
    -------
    RunResult

    Raises
    ------
    ConfigError
        For a config or dataset that cannot be run (before any training).
    RunFolderExists
        If the run folder exists and ``force`` is False (before any training).
    CommandError
        For a ``checkpoint`` / ``resume`` mismatch, or a journal written by
        another search.
    """
    stdout = stdout or sys.stdout
    config = load_config(config_path, overrides).with_device(device)
    folder = Path(out) if out is not None else default_out(config)
    check_out_dir(folder, force)
    _check_checkpoint(checkpoint, resume)
    classifier = is_classifier(config.estimator_class())
    try:
        dataset = load_dataset(
            config.dataset,
            classification=classifier,
            tabular=config.preprocessing == "auto",
        )
    except ConfigError as error:
        raise _with_source(error, config) from error
    search, recorder = build_search(config, dataset, progress=progress)
    search.set_params(checkpoint=checkpoint)
    inputs = {
        "standardize": "standardized",
        "auto": "imputed, standardized"
        + (", one-hot encoded" if dataset.categorical else ""),
        "none": "raw",
    }[config.preprocessing]
    device_used = resolve_device(config.params.get("device", "auto"))
    print(
        f"torchhpo {__version__}: {config.kind} search, "
        f"{count_candidates(config)} candidates x {config.cv} folds of "
        f"{config.estimator} ({inputs} inputs) on {dataset.describe()}; "
        f"device {device_used}",
        file=stdout,
        flush=True,
    )
    started = dt.datetime.now(dt.timezone.utc)
    tic = time.perf_counter()
    try:
        search.fit(dataset.X, dataset.y)
    except CheckpointError as error:
        raise CommandError(str(error)) from error
    seconds = time.perf_counter() - tic
    fitted = search
    if config.kind == "optuna":
        from ._optuna import TrialResults

        search = TrialResults(search)  # one row per trial, scikit-learn's columns

    run_folder = RunFolder(folder, force).open()
    run_folder.write_cv_results(plain_cv_results(search.cv_results_))
    run_folder.write_best_params(search.best_params_)
    run_folder.add(
        *save_model(
            search.best_estimator_,
            folder,
            extra={
                "feature_names": dataset.feature_names,
                "target": dataset.target_name,
                "numeric": dataset.numeric,
                "categorical": dataset.categorical,
            },
        )
    )
    run_folder.write_config(config)
    if plots and plots_available() and config.kind == "optuna":
        from ._optuna import write_plots as write_optuna_plots

        run_folder.add(*write_optuna_plots(folder / "plots", search))
    elif plots and plots_available():
        plots_folder = folder / "plots"
        run_folder.add(*write_plots(plots_folder, search, config, recorder, seconds))
    elif plots:
        print(
            "Plots skipped: matplotlib is not installed "
            "(pip install 'torchhpo[plots]').",
            file=stdout,
        )
    if config.tracking:
        from ._tracking import write_tracking

        write_tracking(folder, config.tracking, search, fitted, recorder, dataset)
    run_folder.finish(
        {
            "torchhpo_version": __version__,
            "config": str(config.source),
            "started": started.isoformat(timespec="seconds"),
            "search_seconds": round(seconds, 3),
            "n_candidates": len(search.cv_results_["params"]),
            "n_splits": search.n_splits_,
            "best_index": int(search.best_index_),
            "best_score": float(search.best_score_),
            "scoring": config.scoring,
            "dataset": dataset.describe(),
        }
    )
    print(
        summary(
            search, top=top, scoring=config.scoring, seconds=seconds, folder=folder
        ),
        file=stdout,
        flush=True,
    )
    return RunResult(
        folder, config, dataset, fitted, recorder, seconds, list(run_folder.files)
    )


def _check_checkpoint(checkpoint: str | Path | None, resume: bool) -> None:
    """Refuse --resume without a journal, and a journal --resume did not ask for."""
    if checkpoint is None:
        if resume:
            raise CommandError(
                "--resume needs --checkpoint JOURNAL, the run's journal."
            )
        return
    path = Path(checkpoint)
    if resume and not path.is_file():
        raise CommandError(f"--resume: the journal {path} does not exist.")
    if not resume and path.exists():
        raise CommandError(
            f"the journal {path} exists; pass --resume to continue its run, or "
            "another --checkpoint path to start afresh."
        )


# -- predict ------------------------------------------------------------------------
def _features(path: Path, feature_names: list[str], target: str | None) -> np.ndarray:
    """Read the model's features from a CSV (by header name) or NPY file."""
    n_features = len(feature_names)
    if path.suffix.lower() == ".npy":
        array = load_npy(path)
        if array.shape[1] != n_features:
            raise CommandError(
                f"{path.name} has {array.shape[1]} columns; the model takes "
                f"{n_features} features."
            )
        return array.astype(np.float64)
    if path.suffix.lower() == ".parquet":
        frame = read_table(path, key="data")
        missing = [n for n in feature_names if n not in frame.columns]
        if missing:
            raise CommandError(
                f"{path.name} lacks the model's feature columns {', '.join(missing)}."
            )
        return frame[feature_names].to_numpy(dtype=np.float64)
    header, cells = read_csv(path)
    if all(name in header for name in feature_names):
        columns = [header.index(name) for name in feature_names]
    else:
        columns = [j for j, name in enumerate(header) if name != target]
        if len(columns) != n_features:
            missing = [n for n in feature_names if n not in header]
            raise CommandError(
                f"{path.name} lacks the model's feature columns "
                f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''} and "
                f"does not have {n_features} other columns to take in order."
            )
    names = [header[j] for j in columns]
    return numeric_columns(path, names, cells[:, columns])


def _table_features(path: Path, info: dict):
    """Read the raw columns a ``preprocessing: auto`` model takes (CSV, Parquet).

    The file must hold exactly the training feature columns (in any order), plus
    the target column optionally; extra or missing columns are an error that
    names them.
    """
    try:
        frame = read_table(path, key="data")
    except ConfigError as error:
        raise CommandError(error.message) from error
    names = list(info["feature_names"])
    target = info.get("target")
    missing = [n for n in names if n not in frame.columns]
    extra = [c for c in frame.columns if c not in names and c != target]
    problems = []
    if missing:
        problems.append(f"lacks the model's columns {', '.join(map(repr, missing))}")
    if extra:
        problems.append(
            f"has columns the model was not trained on {', '.join(map(repr, extra))}"
        )
    if problems:
        raise CommandError(
            f"{path.name} {' and '.join(problems)}; expected the columns "
            f"{', '.join(names)} (the target column {target!r} may be present)."
        )
    numeric = list(info.get("numeric") or [])
    for name in numeric:
        if not is_numeric_column(frame[name]) and frame[name].notna().any():
            bad = next(str(v) for v in frame[name].dropna() if not _is_number(str(v)))
            raise CommandError(
                f"{path.name}, column {name!r}: {bad!r} is not a number; the model "
                "was trained on this column as numeric."
            )
    categorical = [n for n in names if n not in numeric]
    return feature_frame(frame, numeric, categorical)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def predict(
    run_dir: str | Path,
    data: str | Path,
    *,
    out: str | Path | None = None,
    force: bool = False,
) -> Path:
    """Predict with a run folder's saved model; write the predictions as CSV.

    Parameters
    ----------
    run_dir : str or Path
        A run folder written by :func:`run`.
    data : str or Path
        A CSV file with a header row (the training feature names select and order
        the columns; a target column, if present, is ignored; without those names,
        the non-target columns are taken in order), or a 2-D ``.npy`` array of
        features. For a ``preprocessing: auto`` model: a CSV or Parquet file with
        the raw training columns by name (strings and missing cells allowed;
        extra or missing columns are an error naming them).
    out : str or Path, optional
        Output CSV; default ``<data file name>.predictions.csv`` next to ``data``.
    force : bool
        Overwrite an existing output file.

    Returns
    -------
    Path
        The CSV written: a ``prediction`` column, and ``proba_<class>`` columns
        for a classifier.
    """
    run_dir, data = Path(run_dir), Path(data)
    if not data.is_file():
        raise CommandError(f"data file not found: {str(data)!r}.")
    if data.suffix.lower() not in (".csv", ".parquet", ".npy"):
        raise CommandError(f"{data.name} is not a .csv, .parquet or .npy file.")
    out = (
        Path(out) if out is not None else data.with_name(f"{data.stem}.predictions.csv")
    )
    if out.exists() and not force:
        raise CommandError(f"{out} exists; pass --force to overwrite it.")
    model = load_model(run_dir)
    info = load_model_info(run_dir)
    preprocessing, _ = split_model(model)
    if preprocessing is not None and preprocessing.kind == "auto":
        if data.suffix.lower() != ".npy":
            X = _table_features(data, info)
        elif preprocessing.categorical:
            raise CommandError(
                "this model takes named raw columns, some of them strings "
                "(preprocessing: auto); give a .csv or .parquet file with a header "
                "row."
            )
        else:
            array = load_npy(data)
            names = list(info["feature_names"])
            if array.shape[1] != len(names):
                raise CommandError(
                    f"{data.name} has {array.shape[1]} columns; the model takes "
                    f"{len(names)} features."
                )
            X = numeric_frame(array, names)
    else:
        try:
            X = _features(data, list(info["feature_names"]), info.get("target"))
        except ConfigError as error:
            raise CommandError(error.message) from error
    predictions = np.asarray(model.predict(X))
    columns = [predictions.reshape(len(X), -1)]
    header = (
        ["prediction"]
        if predictions.ndim == 1
        else [f"prediction_{j}" for j in range(predictions.shape[1])]
    )
    if is_classifier(model) and predictions.ndim == 1:
        columns.append(model.predict_proba(X))
        header += [f"proba_{c}" for c in model.classes_]
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for i in range(len(X)):
            row = []
            for block in columns:
                row.extend(_text(v) for v in block[i])
            writer.writerow(row)
    return out


def _text(value) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value) if isinstance(value, float) else str(value)
