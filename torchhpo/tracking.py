"""Experiment tracking for torchhpo's searches: MLflow runs and TensorBoard scalars.

``mlflow.sklearn.autolog()`` patches the ``fit`` of scikit-learn's own classes;
torchhpo's searches are subclasses of scikit-learn's with their own ``fit`` (the
fused one), which autologging never sees, so it records nothing for them. This
module logs what autologging logs for scikit-learn's ``GridSearchCV``:

* a parent run with the search's parameters (``get_params(deep=False)``), the best
  candidate's parameters as ``best_<name>``, the metric ``best_cv_score`` (and
  ``training_score`` when the training data is given), the tags
  ``estimator_name`` / ``estimator_class``, and ``cv_results.csv`` as an artifact;
* one child run per candidate, for the ``max_tuning_runs`` best ranked (5, as
  autologging), with the candidate's estimator parameters and its
  ``cv_results_`` numbers (``mean_test_score``, ``std_test_score``,
  ``rank_test_score``, fit and score times) as metrics.

:func:`log_search` logs one fitted search (into the active run, or a new one);
:func:`autolog` makes every torchhpo search ``fit`` do so. Both need MLflow
(``pip install 'torchhpo[tracking]'``; ``mlflow-skinny`` is enough).

:func:`write_loss_curves` writes the per-epoch training loss of a search's best
candidates as TensorBoard scalars (``torch.utils.tensorboard``; needs the
``tensorboard`` package), one TensorBoard run per candidate and one scalar tag
per CV fold.
"""

from __future__ import annotations

import functools
import math
import numbers
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.base import clone

#: Child runs logged by default: the best ranked candidates (MLflow's default).
MAX_TUNING_RUNS = 5
#: Longest parameter value MLflow stores (longer ones are cut, as autologging does).
MAX_PARAM_LENGTH = 500


def _mlflow():
    try:
        import mlflow
    except ImportError as exc:
        raise ImportError(
            "torchhpo.tracking needs MLflow: pip install 'torchhpo[tracking]' "
            "(or mlflow-skinny)."
        ) from exc
    return mlflow


def _param(value) -> str:
    text = str(value)
    return text[:MAX_PARAM_LENGTH]


def _metric(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Number):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def candidates(search) -> list[dict]:
    """Return each candidate of a fitted search: its parameters and numbers.

    Parameters
    ----------
    search : fitted search
        A torchhpo (or scikit-learn) ``*SearchCV``, or an ``OptunaSearchCV``
        (one candidate per finished trial).

    Returns
    -------
    list of dict
        ``{"params": dict, "metrics": dict, "rank": int}``, in the search's order.
    """
    results = search.cv_results_
    if "params" not in results:  # OptunaSearchCV: one record per trial
        from .search._optuna_space import estimator_params

        rows = []
        for trial in search.trials_:
            metrics = {
                key: value
                for key, value in trial.user_attrs.items()
                if key.startswith(("mean_", "std_")) and _metric(value) is not None
            }
            rows.append(
                {
                    "params": estimator_params(trial.params),
                    "metrics": metrics,
                    "value": trial.value,
                }
            )
        values = np.array(
            [np.nan if r["value"] is None else r["value"] for r in rows], dtype=float
        )
        order = np.argsort(np.where(np.isnan(values), np.inf, -values), kind="stable")
        for rank, i in enumerate(order, start=1):
            rows[i]["rank"] = rank
            rows[i]["metrics"]["rank_test_score"] = rank
            del rows[i]["value"]
        return rows
    numeric = [
        key
        for key in results
        if key.startswith(("mean_", "std_", "rank_")) and not key.startswith("param_")
    ]
    ranks = [k for k in results if k.startswith("rank_test_")]
    rank_key = "rank_test_score" if "rank_test_score" in results else ranks[0]
    rows = []
    for i, params in enumerate(results["params"]):
        metrics = {}
        for key in numeric:
            value = _metric(results[key][i])
            if value is not None:
                metrics[key] = value
        rank = int(results[rank_key][i])
        rows.append({"params": dict(params), "metrics": metrics, "rank": rank})
    return rows


def _estimator_params(search, params: dict) -> dict:
    """The candidate's estimator parameters, as autologging's child runs show."""
    try:
        estimator = clone(search.estimator).set_params(**params)
        return estimator.get_params(deep=False)
    except Exception:  # a parameter the estimator cannot take back: show as given
        return dict(params)


def log_search(
    search,
    X=None,
    y=None,
    *,
    max_tuning_runs: int | None = MAX_TUNING_RUNS,
    run_name: str | None = None,
) -> str:
    """Log a fitted search to MLflow as ``mlflow.sklearn.autolog()`` logs one.

    Parameters
    ----------
    search : fitted search
        A torchhpo search (``GridSearchCV``, ``RandomizedSearchCV``, the halving
        searches, ``OptunaSearchCV``) or a scikit-learn one.
    X, y : array-like, optional
        The training data: with them, ``training_score`` (the refit model's
        ``score``) is logged too.
    max_tuning_runs : int or None, default=5
        Child runs for the best ranked candidates; None: one per candidate.
    run_name : str, optional
        Name of the parent run, when one is created.

    Returns
    -------
    str
        The parent run's id: the active run's, or a new run's (ended here).
    """
    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    active = mlflow.active_run()
    run = active if active is not None else mlflow.start_run(run_name=run_name)
    try:
        run_id = run.info.run_id
        _log_parent(mlflow, search, X, y)
        rows = sorted(candidates(search), key=lambda row: row["rank"])
        if max_tuning_runs is not None:
            rows = rows[:max_tuning_runs]
        experiment = run.info.experiment_id
        for row in rows:
            child = client.create_run(
                experiment,
                tags={
                    "mlflow.parentRunId": run_id,
                    "estimator_name": type(search.estimator).__name__,
                    "estimator_class": _class_path(search.estimator),
                },
            )
            params = _estimator_params(search, row["params"])
            client.log_batch(
                child.info.run_id,
                metrics=[
                    mlflow.entities.Metric(key, value, _now(), 0)
                    for key, value in row["metrics"].items()
                ],
                params=[
                    mlflow.entities.Param(key, _param(value))
                    for key, value in params.items()
                ],
            )
            client.set_terminated(child.info.run_id)
    finally:
        if active is None:
            mlflow.end_run()
    return run_id


def _log_parent(mlflow, search, X, y) -> None:
    params = {
        key: _param(value)
        for key, value in search.get_params(deep=False).items()
        if key != "study" or value is not None
    }
    params.update(
        {f"best_{key}": _param(value) for key, value in search.best_params_.items()}
    )
    mlflow.log_params(params)
    metrics = {"best_cv_score": float(search.best_score_)}
    if X is not None and getattr(search, "refit", False):
        try:
            metrics["training_score"] = float(search.score(X, y))
        except Exception:  # a scorer that needs more than X and y
            pass
    mlflow.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})
    mlflow.set_tags(
        {
            "estimator_name": type(search).__name__,
            "estimator_class": _class_path(search),
        }
    )
    try:
        import pandas as pd

        frame = pd.DataFrame(
            {k: v for k, v in search.cv_results_.items() if len(v) == _n_rows(search)}
        )
        mlflow.log_text(frame.to_csv(index=False), "cv_results.csv")
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass


def _n_rows(search) -> int:
    results = search.cv_results_
    return len(next(iter(results.values()))) if results else 0


def _class_path(obj) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _now() -> int:
    import time

    return int(time.time() * 1000)


# -- autolog -------------------------------------------------------------------------
_state = threading.local()
#: Patched classes: their original ``fit``, and whether it was their own.
_PATCHED: dict[type, tuple[Callable, bool]] = {}


def _search_classes() -> list[type]:
    from . import search as search_module

    classes = [
        search_module.GridSearchCV,
        search_module.RandomizedSearchCV,
        search_module.HalvingGridSearchCV,
        search_module.HalvingRandomSearchCV,
    ]
    try:
        classes.append(search_module.OptunaSearchCV)
    except ImportError:  # Optuna not installed
        pass
    return classes


def autolog(
    max_tuning_runs: int | None = MAX_TUNING_RUNS, disable: bool = False
) -> None:
    """Log every torchhpo search ``fit`` to MLflow (:func:`log_search`).

    What ``mlflow.sklearn.autolog()`` does for scikit-learn's searches, for
    torchhpo's, which it does not see. A fit inside an active run logs into it;
    otherwise each fit gets its own run.

    Parameters
    ----------
    max_tuning_runs : int or None, default=5
        Child runs per search (the best ranked candidates); None: all.
    disable : bool, default=False
        Undo a previous ``autolog()``.
    """
    if disable:
        for cls, (fit, own) in _PATCHED.items():
            if own:
                cls.fit = fit
            else:
                del cls.fit
        _PATCHED.clear()
        return
    _mlflow()
    for cls in _search_classes():
        if cls not in _PATCHED:
            _PATCHED[cls] = (cls.fit, "fit" in vars(cls))
        cls.fit = _logged_fit(_PATCHED[cls][0], max_tuning_runs)


def _logged_fit(fit: Callable, max_tuning_runs: int | None) -> Callable:
    @functools.wraps(fit)
    def logged(self, X, y=None, *args, **kwargs):
        if getattr(_state, "fitting", False):  # a nested search fit
            return fit(self, X, y, *args, **kwargs)
        _state.fitting = True
        try:
            fitted = fit(self, X, y, *args, **kwargs)
        finally:
            _state.fitting = False
        log_search(fitted, X, y, max_tuning_runs=max_tuning_runs)
        return fitted

    return logged


# -- TensorBoard -----------------------------------------------------------------------
def write_loss_curves(
    folder: str | Path,
    curves: Sequence[tuple[str, Sequence[Sequence[float] | None]]],
) -> list[Path]:
    """Write per-epoch loss curves as TensorBoard scalars.

    Parameters
    ----------
    folder : str or Path
        The TensorBoard log folder (``tensorboard --logdir FOLDER``).
    curves : sequence of (name, per-fold curves)
        One TensorBoard run per name (a candidate); each fold's curve becomes the
        scalar ``loss/fold{k}`` over epochs (``None`` or empty: skipped), and
        their mean over the folds still training ``loss/mean``.

    Returns
    -------
    list of Path
        The run folders written.

    Raises
    ------
    ImportError
        Without the ``tensorboard`` package.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ImportError(
            "TensorBoard loss curves need the tensorboard package: "
            "pip install 'torchhpo[tracking]'."
        ) from exc
    folder = Path(folder)
    written = []
    for name, folds in curves:
        path = folder / name
        writer = SummaryWriter(log_dir=str(path))
        try:
            kept = [list(c) for c in folds if c]
            for k, curve in enumerate(folds):
                for epoch, loss in enumerate(curve or [], start=1):
                    writer.add_scalar(f"loss/fold{k}", float(loss), epoch)
            for epoch in range(1, max((len(c) for c in kept), default=0) + 1):
                values = [c[epoch - 1] for c in kept if len(c) >= epoch]
                writer.add_scalar("loss/mean", float(np.mean(values)), epoch)
        finally:
            writer.close()
        written.append(path)
    return written
