"""What the engine is asked to train, and what it hands back.

These plain data classes are the whole interface between the engine and its callers
(the estimators' ``fit`` and the searches' scheduler): "train these models, with these
hyper-parameters, on these index sets of this data". They hold NumPy arrays and Python
scalars only, so callers never touch tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Target kinds, which fix the output activation and the loss of a whole pack.
TARGET_KINDS = ("binary", "multiclass", "multilabel", "regression")

#: Output activation per (target kind, loss), as scikit-learn's ``_initialize``.
OUTPUT_ACTIVATION = {
    ("binary", "log_loss"): "logistic",
    ("multilabel", "log_loss"): "logistic",
    ("multiclass", "log_loss"): "softmax",
    ("regression", "squared_error"): "identity",
    ("regression", "poisson"): "exp",
}


@dataclass(frozen=True)
class Hyperparams:
    """Per-model training hyper-parameters, with scikit-learn's names and meanings.

    Everything here may differ between the models of one pack except
    ``hidden_layer_sizes`` and ``batch_size``, which fix tensor shapes.
    """

    hidden_layer_sizes: tuple[int, ...] = (100,)
    activation: str = "relu"
    solver: str = "adam"
    alpha: float = 1e-4
    batch_size: int | str = "auto"
    learning_rate: str = "constant"
    learning_rate_init: float = 1e-3
    power_t: float = 0.5
    max_iter: int = 200
    shuffle: bool = True
    tol: float = 1e-4
    momentum: float = 0.9
    nesterovs_momentum: bool = True
    early_stopping: bool = False
    validation_fraction: float = 0.1
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    n_iter_no_change: float = 10
    max_fun: int = 15000

    def shape_key(self) -> tuple:
        """Return the key that models must share to train in one pack."""
        return (tuple(self.hidden_layer_sizes), self.batch_size)


@dataclass
class OptimizerState:
    """State of one model's stochastic optimizer, kept between ``partial_fit`` calls.

    Attributes
    ----------
    solver : {"adam", "sgd"}
        Which optimizer the moments belong to.
    step : int
        Adam's time step ``t`` (number of updates so far).
    learning_rate : float
        SGD's current learning rate (changed by ``invscaling`` / ``adaptive``).
    first : list of ndarray
        Adam's first moments or SGD's velocities, coefficients then intercepts.
    second : list of ndarray or None
        Adam's second moments.
    """

    solver: str
    step: int
    learning_rate: float
    first: list[np.ndarray]
    second: list[np.ndarray] | None


@dataclass
class ModelState:
    """Weights and training counters of one model, to start from or to resume.

    ``coefs`` / ``intercepts`` use scikit-learn's shapes: ``(fan_in, fan_out)`` and
    ``(fan_out,)``. The counters continue scikit-learn's ``t_``, ``best_loss_``,
    ``loss_curve_`` ... across ``warm_start`` fits and ``partial_fit`` calls.

    A *resume* state (:attr:`ModelResult.resume`) describes a model paused inside
    one fit: ``coefs`` are the running weights, ``best_coefs`` /
    ``best_intercepts`` the best ones so far with ``early_stopping``, and the
    optimizer state is always included.
    """

    coefs: list[np.ndarray]
    intercepts: list[np.ndarray]
    optimizer: OptimizerState | None = None
    t: int = 0
    epochs_seen: int = 0
    loss_curve: list[float] = field(default_factory=list)
    best_loss: float | None = np.inf
    validation_scores: list[float] | None = None
    best_validation_score: float | None = None
    no_improvement_count: int = 0
    best_coefs: list[np.ndarray] | None = None
    best_intercepts: list[np.ndarray] | None = None


@dataclass
class ModelTask:
    """One model to train: its hyper-parameters, its data rows and its random stream.

    Parameters
    ----------
    hyper : Hyperparams
        Training hyper-parameters.
    train_index : ndarray of int
        Rows of the shared data this model trains on (in this order when
        ``shuffle=False``).
    val_index : ndarray of int or None
        Rows used for the ``early_stopping`` validation score, or None.
    seed : int
        Seed of the model's own random stream (initial weights, shuffling). A model's
        result depends on its seed, never on the other models of its pack.
    init : ModelState or None
        Start from these weights and counters (``warm_start``, ``partial_fit``)
        instead of a fresh Glorot initialisation.
    incremental : bool
        ``partial_fit`` semantics: one epoch, no ``max_iter`` warning, the
        optimizer state in ``init`` is continued.
    incremental_epochs : int
        With ``incremental``: how many ``partial_fit`` epochs to run, as if
        ``partial_fit`` were called that many times (``max_iter`` and the
        convergence rule never stop the model; ``tol`` / ``n_iter_no_change``
        still drive the ``adaptive`` learning rate, as in scikit-learn). Default 1.
    epochs_done : int
        Epochs of this same fit already trained: ``init`` is the
        :attr:`ModelResult.resume` state of a model paused after that many epochs,
        and training continues it as if it had never stopped (they count towards
        ``max_iter`` and ``n_iter``). A continued model ends exactly as the model
        trained from scratch with the same ``max_iter``.
    resumable : bool
        Hand back :attr:`ModelResult.resume` when the model stops at ``max_iter``
        or is stopped by an :class:`~torchhpo.engine.policy.EpochPolicy`, so that
        it can be continued later (halving rungs).
    score_index : ndarray of int or None
        Rows on which the model's score (accuracy, or R² for regression) is
        computed after every epoch for an
        :class:`~torchhpo.engine.policy.EpochPolicy` (e.g. its CV test fold).
    group : int or None
        Models of one group (a candidate's folds) are kept in one pack where the
        packing allows, so a policy sees all of them at each epoch.
    """

    hyper: Hyperparams
    train_index: np.ndarray
    val_index: np.ndarray | None = None
    seed: int = 0
    init: ModelState | None = None
    incremental: bool = False
    incremental_epochs: int = 1
    epochs_done: int = 0
    resumable: bool = False
    score_index: np.ndarray | None = None
    group: int | None = None


@dataclass
class ModelResult:
    """What training one model produced.

    Attributes
    ----------
    state : ModelState
        Final weights (the best ones with ``early_stopping``) and counters.
    n_iter : int
        Epochs (stochastic solvers) or iterations (lbfgs) run in this call.
    loss : float
        Last epoch's training loss (scikit-learn's ``loss_``).
    hit_max_iter : bool
        True when training stopped because ``max_iter`` was reached without
        convergence (scikit-learn warns ``ConvergenceWarning``).
    failure : str or None
        Why the model could not be trained (non-finite loss, ...), else None.
    fit_time : float
        This model's share, in seconds, of the wall time of the pack it trained in.
    convergence_message : str or None
        scikit-learn's ``ConvergenceWarning`` text when ``max_iter`` was hit.
    resume : ModelState or None
        With ``ModelTask.resumable``: where the model stands, to continue the same
        fit (``ModelTask.epochs_done`` = ``n_iter``), when it stopped at
        ``max_iter`` or was stopped by a policy; None when it converged or failed
        (its result is final for any larger ``max_iter``).
    pruned : bool
        The model was stopped by an :class:`~torchhpo.engine.policy.EpochPolicy`.
    out_of_memory : bool
        The model's tensors could not be allocated, even in a pack of its own:
        ``failure`` says why, and the estimator raises ``MemoryError`` (where
        NumPy, and so scikit-learn, does) instead of ``ValueError``.
    """

    state: ModelState
    n_iter: int
    loss: float
    hit_max_iter: bool = False
    failure: str | None = None
    fit_time: float = 0.0
    convergence_message: str | None = None
    resume: ModelState | None = None
    pruned: bool = False
    out_of_memory: bool = False
