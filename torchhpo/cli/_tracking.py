"""The config's ``tracking:`` section: TensorBoard loss curves and an MLflow run.

``tensorboard`` writes the per-epoch training loss of the ``top`` best candidates
(one TensorBoard run per candidate, named by rank and parameters; one scalar per
CV fold and their mean), from the fold models the search scored
(:mod:`~torchhpo.cli._recorder`), plus the refit best model's curve as ``best_refit``.
An Optuna run records no fold curves: it writes ``best_refit`` only. ``mlflow``
logs the search with :func:`torchhpo.tracking.log_search` to the current MLflow
tracking URI (``MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._build import plain_name


def _run_name(rank: int, params: dict) -> str:
    text = ",".join(f"{plain_name(k)}={v}" for k, v in params.items())
    safe = "".join(c if c.isalnum() or c in "=,.-_" else "_" for c in text)
    return f"rank{rank}_{safe}"[:120]


def write_tracking(
    folder: Path, tracking: dict, search, fitted, recorder, dataset
) -> list[Path]:
    """Record a finished run as its ``tracking`` section says.

    Parameters
    ----------
    folder : Path
        The run folder (``tensorboard: true`` writes into ``folder/tensorboard``).
    tracking : dict
        The checked ``tracking`` section.
    search : fitted search
        What the run folder reports (``cv_results_`` with ``params``).
    fitted : fitted search
        The search as fitted (an OptunaSearchCV for Optuna runs).
    recorder : LossCurveRecorder
        The fold loss curves the search's scorer kept.
    dataset : Dataset
        The run's data (MLflow's ``training_score``).

    Returns
    -------
    list of Path
        The TensorBoard run folders written.
    """
    from .. import tracking as tracking_module

    written: list[Path] = []
    board = tracking.get("tensorboard")
    if board is not None:
        logdir = folder / "tensorboard" if board is True else Path(board)
        results = search.cv_results_
        ranks = np.asarray(results["rank_test_score"])
        order = np.lexsort((np.arange(len(ranks)), ranks))[: tracking["top"]]
        curves = []
        for i in order:
            params = results["params"][i]
            folds = [
                None if c is None else c.loss_curve
                for c in recorder.fold_curves(params, search.n_splits_)
            ]
            if any(folds):
                curves.append((_run_name(int(ranks[i]), params), folds))
        best = getattr(fitted.best_estimator_, "loss_curve_", None)
        if best is None and hasattr(fitted.best_estimator_, "steps"):
            best = getattr(fitted.best_estimator_[-1], "loss_curve_", None)
        if best:
            curves.append(("best_refit", [best]))
        written += tracking_module.write_loss_curves(logdir, curves)
    if tracking.get("mlflow"):
        tracking_module.log_search(fitted, dataset.X, dataset.y)
    return written
