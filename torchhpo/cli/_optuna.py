"""``search.kind: optuna``: an OptunaSearchCV run from a config (the ``optuna`` extra).

A config's Optuna search::

    search:
      kind: optuna
      space:                         # lists -> categorical; distributions as usual
        hidden_layer_sizes: [[50, 50], [100]]
        alpha: {loguniform: [1e-5, 1e-1]}
      n_trials: 20                   # trials the study should hold in the end
      timeout: null                  # seconds; no new batch after it
      sampler: tpe                   # tpe | random
      pruner: median                 # median | hyperband | successive_halving | none
      max_iter: 200                  # partial_fit epochs per fold when pruning
      storage: sqlite:///search.db   # optional: optuna-dashboard, continuation
      study_name: seed_optuna        # default: the config file's name
      random_state: 0                # seeds the sampler

With ``storage``, a rerun of the same config loads the study and runs only the
trials it lacks. The study names its parameters as the config does (``alpha``), also
when the estimator is a Pipeline whose MLP step takes ``mlp__alpha`` (the search's
``param_names`` maps one to the other); a stored study made by an earlier torchhpo,
which named them ``mlp__alpha``, is continued with its own names, with a warning.
The run folder's ``cv_results.csv`` holds one row per trial (its
number, state, the epoch it was pruned at, parameters, scores, rank), the
leaderboard ranks the completed trials, and the plots
(:mod:`~torchhpo.cli._optuna_plots`) are the optimization history and each trial's
intermediate scores per epoch, pruned trials marked where they stopped.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._schema import Distribution


def optuna_distributions(config) -> dict:
    """Return the config's space as Optuna distributions, keyed by the config's names.

    Lists become categoricals (layer-size lists as ``"50,50"`` strings, which
    OptunaSearchCV reads back as tuples); ``loguniform`` / ``uniform`` become float
    distributions, ``randint [a, b]`` the integers ``a <= k < b``.
    """
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    space = {}
    for name, values in config.space.items():
        if isinstance(values, Distribution):
            if values.kind == "randint":
                dist = IntDistribution(int(values.low), int(values.high) - 1)
            else:
                dist = FloatDistribution(
                    values.low, values.high, log=values.kind == "loguniform"
                )
        else:
            dist = CategoricalDistribution(
                [
                    ",".join(str(v) for v in value)
                    if isinstance(value, tuple)
                    else value
                    for value in values
                ]
            )
        space[name] = dist
    return space


def build(
    config, estimator, space: dict, cv, scoring, progress: bool, param_names: dict
):
    """Return the configured OptunaSearchCV and its study (loaded if stored).

    ``space`` is keyed by the config's names, ``param_names`` maps each to the
    estimator's (``alpha`` -> ``mlp__alpha`` for a Pipeline).
    """
    import optuna

    from ..search import OptunaSearchCV

    options = config.optuna
    seed = config.random_state
    sampler = (
        optuna.samplers.TPESampler(seed=seed)
        if options["sampler"] == "tpe"
        else optuna.samplers.RandomSampler(seed=seed)
    )
    pruner = {
        "median": optuna.pruners.MedianPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "none": optuna.pruners.NopPruner,
    }[options["pruner"]]()
    study = optuna.create_study(
        storage=options["storage"],
        study_name=options["study_name"] or config.source.stem,
        direction="maximize",
        sampler=sampler,
        pruner=pruner,
        load_if_exists=options["storage"] is not None,
    )
    finished = sum(t.state.is_finished() for t in study.trials)
    space, param_names = _names_of_study(study, space, param_names)
    return OptunaSearchCV(
        estimator,
        space,
        param_names=param_names,
        cv=cv,
        scoring=scoring,
        study=study,
        n_trials=max(options["n_trials"] - finished, 0),
        timeout=options["timeout"],
        enable_pruning=options["pruner"] != "none",
        max_iter=options["max_iter"],
        progress=progress,
    )


def _names_of_study(study, space: dict, param_names: dict) -> tuple[dict, dict]:
    """The space and ``param_names`` to continue ``study`` with.

    A study stored by an earlier torchhpo names a Pipeline's parameters as the
    estimator does (``mlp__alpha``); asking it for ``alpha`` would start a second
    set of parameters its sampler knows nothing of, so such a study keeps its names
    (the run folder still shows the config's), and a warning says so.
    """
    renamed = {target for name, target in param_names.items() if target != name}
    recorded = set()
    for trial in study.get_trials(deepcopy=False):
        recorded.update(trial.params)
    old = sorted(recorded & renamed)
    if not old:
        return space, param_names
    warnings.warn(
        f"The stored Optuna study {study.study_name!r} names its parameters as the "
        f"Pipeline does ({', '.join(old)}), as torchhpo did before studies used the "
        "config's names; it is continued with its own names (cv_results.csv, "
        "best_params.json and the plots still show the config's).",
        UserWarning,
        stacklevel=2,
    )
    return {param_names.get(name, name): dist for name, dist in space.items()}, {}


class TrialResults:
    """A fitted OptunaSearchCV seen as the command line's other searches are.

    ``cv_results_`` is one row per trial with scikit-learn's column names (so the
    run folder's CSV and the leaderboard work unchanged) plus ``number``,
    ``state`` and ``pruned_at_epoch``; ranks order the completed trials first.

    Parameters
    ----------
    search : OptunaSearchCV
        The fitted search.
    """

    def __init__(self, search) -> None:
        self.search = search
        trials = search.trials_
        self.trials = trials
        self.n_splits_ = search.n_splits_
        self.best_estimator_ = search.best_estimator_
        self.best_score_ = search.best_score_
        names = list(search.param_distributions)
        results: dict = {
            "number": [t.number for t in trials],
            "state": [t.state.name for t in trials],
            "pruned_at_epoch": [
                t.last_step + 1 if t.state.name == "PRUNED" else None for t in trials
            ],
        }
        for key in ("mean_fit_time", "std_fit_time"):
            results[key] = [t.user_attrs.get(key, np.nan) for t in trials]
        for name in names:
            results[f"param_{name}"] = [t.params.get(name) for t in trials]
        results["params"] = [dict(t.params) for t in trials]
        for k in range(self.n_splits_):
            key = f"split{k}_test_score"
            results[key] = [t.user_attrs.get(key, np.nan) for t in trials]
        for key in ("mean_test_score", "std_test_score"):
            results[key] = [float(t.user_attrs.get(key, np.nan)) for t in trials]
        complete = np.array([t.state.name == "COMPLETE" for t in trials])
        value = np.array([t.value if t.value is not None else np.nan for t in trials])
        key = np.where(complete & np.isfinite(value), -value, np.inf)
        order = np.lexsort((np.arange(len(trials)), key))
        rank = np.empty(len(trials), dtype=np.int32)
        rank[order] = np.arange(1, len(trials) + 1)
        results["rank_test_score"] = rank
        self.cv_results_ = results
        best = search.best_trial_.number
        self.best_index_ = results["number"].index(best)
        self.best_params_ = dict(search.best_params_)
