"""Turn a checked config into the estimator and the search to run.

With ``preprocessing: standardize`` the estimator is a scikit-learn ``Pipeline``
(``standardize`` -> ``mlp``), with ``auto`` a ``Pipeline`` (``preprocess`` ->
``mlp``) whose first step is the ``ColumnTransformer`` of ``_preprocessing``: the
preprocessing is fitted on each fold's training rows only, and the MLP trains
fused. Its searched parameters then read ``mlp__alpha`` in the scikit-learn-derived
searches (and their ``cv_results_``); :data:`MLP_PREFIX` is how the rest of the
command line shows them without it. An Optuna study names them as the config does
(``alpha``): its search maps them through ``param_names``.
"""

from __future__ import annotations

from sklearn.base import clone, is_classifier
from sklearn.model_selection import ParameterGrid, check_cv
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ..search import (
    GridSearchCV,
    HalvingGridSearchCV,
    HalvingRandomSearchCV,
    RandomizedSearchCV,
)
from ._datasets import Dataset
from ._preprocessing import PREPROCESS_STEP, auto_preprocessor
from ._recorder import LossCurveRecorder
from ._schema import Distribution, RunConfig

#: Step names of the Pipeline built for ``preprocessing: standardize``.
SCALER_STEP, MLP_STEP = "standardize", "mlp"
MLP_PREFIX = f"{MLP_STEP}__"

_SEARCHES = {
    "grid": GridSearchCV,
    "random": RandomizedSearchCV,
    "halving_grid": HalvingGridSearchCV,
    "halving_random": HalvingRandomSearchCV,
}


def build_estimator(config: RunConfig, dataset: Dataset | None = None):
    """Return the unfitted estimator: the MLP, or a Pipeline ending with it.

    Parameters
    ----------
    config : RunConfig
    dataset : Dataset, optional
        Needed for ``preprocessing: auto`` (its numeric and string columns).
    """
    mlp = config.estimator_class(**config.params)
    if config.preprocessing == "standardize":
        return Pipeline([(SCALER_STEP, StandardScaler()), (MLP_STEP, mlp)])
    if config.preprocessing == "auto":
        dataset = dataset.as_table()
        step = auto_preprocessor(dataset.numeric, dataset.categorical)
        return Pipeline([(PREPROCESS_STEP, step), (MLP_STEP, mlp)])
    return mlp


def search_name(config: RunConfig, name: str) -> str:
    """Return the search's name for the MLP parameter ``name``."""
    return MLP_PREFIX + name if config.preprocessing != "none" else name


def plain_name(name: str) -> str:
    """Return a search parameter name as the config writes it (no ``mlp__``)."""
    return name.removeprefix(MLP_PREFIX)


def build_space(config: RunConfig) -> dict:
    """Return the search space: lists, and scipy distributions for a random search."""
    return {
        search_name(config, name): values.rv()
        if isinstance(values, Distribution)
        else list(values)
        for name, values in config.space.items()
    }


def build_search(
    config: RunConfig, dataset: Dataset, *, progress: bool = True
) -> tuple[object, LossCurveRecorder]:
    """Return the configured search and the scorer that records fold loss curves.

    The folds are made here (``check_cv(cv)``, as the search would make them) and
    passed to the search as a list, so the recorder knows which fold it scores.
    ``kind: optuna`` gives an OptunaSearchCV (:mod:`~torchhpo.cli._optuna`), which
    scores with the configured scorer (its recorder stays empty).

    Parameters
    ----------
    config : RunConfig
    dataset : Dataset
    progress : bool
        Show the search's progress bar.
    """
    estimator = build_estimator(config, dataset)
    cv = check_cv(config.splitter(), dataset.y, classifier=is_classifier(estimator))
    splits = list(cv.split(dataset.X, dataset.y, dataset.groups))
    space = build_space(config)
    recorder = LossCurveRecorder(
        clone(estimator), config.scoring, dataset.X, splits, list(space)
    )
    if config.kind == "optuna":
        from . import _optuna

        space = _optuna.optuna_distributions(config)
        names = {name: search_name(config, name) for name in space}
        search = _optuna.build(
            config, estimator, space, splits, config.scoring, progress, names
        )
        return search, recorder
    options = {"scoring": recorder, "cv": splits, "progress": progress}
    if config.kind == "random":
        options.update(n_iter=config.n_iter)
    if config.kind != "grid":
        options.update(random_state=config.random_state)
    options.update(config.halving)
    if config.halving.get("resource", "n_samples") != "n_samples":
        options["resource"] = search_name(config, config.halving["resource"])
    return _SEARCHES[config.kind](estimator, space, **options), recorder


def count_candidates(config: RunConfig) -> int:
    """Return how many candidates the search will try (an Optuna search: trials).

    A random search over lists only samples without replacement, so it tries at
    most the size of that grid (scikit-learn warns when ``n_iter`` exceeds it).
    """
    if config.kind == "optuna":
        return config.optuna["n_trials"]
    if config.kind == "random":
        if any(isinstance(v, Distribution) for v in config.space.values()):
            return config.n_iter
        return min(config.n_iter, len(ParameterGrid(config.space)))
    if config.kind == "halving_random":
        n_candidates = config.halving["n_candidates"]
        return n_candidates if isinstance(n_candidates, int) else 0
    return len(ParameterGrid(config.space))
