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

from .._device import resolve_device
from .._version import __version__
from ..search import CheckpointError
from ._build import build_search, count_candidates
from ._columns import (
    COLUMNS_FILE,
    ColumnRecord,
    ColumnsError,
    check_array,
    load_record,
    read_features,
)
from ._config import load_config
from ._datasets import Dataset, feature_frame, load_dataset, load_npy, numeric_frame
from ._model_io import load_model, load_model_info, save_model, split_model
from ._plots import plots_available, write_plots
from ._recorder import LossCurveRecorder
from ._report import plain_cv_results, summary
from ._runs import RunFolder
from ._schema import ConfigError, RunConfig


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
    _check_checkpoint(checkpoint, resume)
    # Claimed now: a second run given the same folder stops before training.
    run_folder = RunFolder(folder, force).claim()
    try:
        fitted, search, config, dataset, recorder, seconds, started = _search(
            config, checkpoint, progress, stdout
        )
    except BaseException:
        run_folder.release()
        raise
    try:
        _write_run(
            run_folder,
            config=config,
            dataset=dataset,
            fitted=fitted,
            search=search,
            recorder=recorder,
            seconds=seconds,
            started=started,
            plots=plots,
        )
    except Exception as error:
        message = run_folder.failed(error, search.cv_results_, search.best_params_)
        raise CommandError(message) from error
    if plots and not plots_available():
        print(
            "Plots skipped: matplotlib is not installed "
            "(pip install 'torchhpo[plots]').",
            file=stdout,
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


def _search(config: RunConfig, checkpoint, progress: bool, stdout: TextIO):
    """Load the data, run the search; return what the run folder is written from."""
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
        f"{count_candidates(config)} candidates x {config.n_splits} folds of "
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
    return fitted, search, config, dataset, recorder, seconds, started


def _write_run(
    run_folder: RunFolder,
    *,
    config: RunConfig,
    dataset: Dataset,
    fitted,
    search,
    recorder: LossCurveRecorder,
    seconds: float,
    started: dt.datetime,
    plots: bool,
) -> None:
    """Write the run folder's files (staged, then moved into place)."""
    run_folder.open()
    folder = run_folder.root
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
    run_folder.write_json(COLUMNS_FILE, ColumnRecord.from_dataset(dataset).to_json())
    run_folder.write_config(config)
    if plots and plots_available() and config.kind == "optuna":
        from ._optuna_plots import write_plots as write_optuna_plots

        run_folder.add(*write_optuna_plots(folder / "plots", search))
    elif plots and plots_available():
        plots_folder = folder / "plots"
        run_folder.add(*write_plots(plots_folder, search, config, recorder, seconds))
    if config.tracking:
        from ._tracking import write_tracking

        written = write_tracking(
            folder, config.tracking, search, fitted, recorder, dataset
        )
        # TensorBoard logs inside the run folder move into place with it.
        run_folder.add(*(p for p in written if Path(p).is_relative_to(folder)))
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
def _features(data: Path, record: ColumnRecord, auto, header: bool):
    """Read the features a saved model takes from ``data``, checked by column.

    ``auto`` is the model's ``preprocessing: auto`` step (None for the other
    modes): its model takes a DataFrame of raw columns (strings as ``str``
    objects, holes allowed); the others a float64 matrix.
    """
    if data.suffix.lower() == ".npy":
        if auto is not None and auto.categorical:
            raise CommandError(
                "this model takes named raw columns, some of them strings "
                "(preprocessing: auto); give a .csv or .parquet file with a header "
                "row."
            )
        try:
            array = load_npy(data)
        except ConfigError as error:
            raise CommandError(error.message) from error
        check_array(array, record, data.name)
        if auto is not None:
            return numeric_frame(array, record.names)
        return array.astype(np.float64)
    frame = read_features(data, record, header=header, holes=auto is not None)
    if auto is not None:
        return feature_frame(frame, auto.numeric, auto.categorical)
    return frame.to_numpy(dtype=np.float64)


def predict(
    run_dir: str | Path,
    data: str | Path,
    *,
    out: str | Path | None = None,
    force: bool = False,
    header: bool = True,
) -> Path:
    """Predict with a run folder's saved model; write the predictions as CSV.

    Parameters
    ----------
    run_dir : str or Path
        A run folder written by :func:`run`.
    data : str or Path
        A CSV file with a header row, or a Parquet file: exactly the training
        columns, by name, in any order (they are put in training order; the target
        column may be present and is ignored; a missing or extra column is an
        error naming it). Or a 2-D ``.npy`` array of the features in training
        order. See :mod:`~torchhpo.cli._columns`.
    out : str or Path, optional
        Output CSV; default ``<data file name>.predictions.csv`` next to ``data``.
    force : bool
        Overwrite an existing output file.
    header : bool
        Whether the CSV's first row is a header. A first row that names none of
        the model's columns and holds a number is refused as probably data unless
        ``header=False``, which reads every row as data, the columns in training
        order.

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
    record = load_record(run_dir, load_model_info(run_dir))
    preprocessing, _ = split_model(model)
    auto = preprocessing if getattr(preprocessing, "kind", None) == "auto" else None
    try:
        X = _features(data, record, auto, header)
    except ColumnsError as error:
        raise CommandError(str(error)) from error
    predictions = np.asarray(model.predict(X))
    columns = [predictions.reshape(len(X), -1)]
    names = (
        ["prediction"]
        if predictions.ndim == 1
        else [f"prediction_{j}" for j in range(predictions.shape[1])]
    )
    if is_classifier(model) and predictions.ndim == 1:
        columns.append(model.predict_proba(X))
        names += [f"proba_{c}" for c in model.classes_]
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(names)
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
