"""scikit-learn's hyper-parameter searches, with every (candidate, fold) model fused.

The searches decide what to train (candidates from ``ParameterGrid`` /
``ParameterSampler``, folds from ``check_cv``) and score it with scikit-learn's
scorers; the :mod:`scheduler <torchhpo.search._scheduler>` turns the (candidate,
fold) models into engine tasks over data views, and the engine trains them in packs.

Modules, in data-flow order: ``_space`` (checks on the parameter space),
``_estimators`` (which estimators the engine can train), ``_views`` (the data each
model trains on), ``_scheduler`` (tasks -> engine -> fitted models), ``_replay``
(scoring through scikit-learn), ``_checkpoint`` (the journal of finished models a
killed search resumes from), ``_progress`` (the bar), ``_base`` (the search's
``fit``), ``_grid`` / ``_random`` / ``_halving`` (the public classes),
``_continuations`` (halving on ``max_iter``: survivors continue training);
``_optuna`` (OptunaSearchCV), ``_optuna_trials`` (its ask / train / tell loop),
``_optuna_pruning`` (Optuna's pruners as an engine epoch policy), ``_optuna_space``
(its spaces and architecture forms): imported on first use, as they need the
``optuna`` extra.
"""

from ._checkpoint import CheckpointError
from ._grid import GridSearchCV
from ._halving import HalvingGridSearchCV, HalvingRandomSearchCV
from ._random import RandomizedSearchCV

__all__ = [
    "CheckpointError",
    "GridSearchCV",
    "HalvingGridSearchCV",
    "HalvingRandomSearchCV",
    "OptunaSearchCV",
    "RandomizedSearchCV",
]


def __getattr__(name: str):
    """Import ``OptunaSearchCV`` only when it is used (it needs Optuna)."""
    if name == "OptunaSearchCV":
        from ._optuna import OptunaSearchCV

        return OptunaSearchCV
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
