"""The shared base of torchhpo's MLPClassifier and MLPRegressor.

It validates inputs and parameters exactly as scikit-learn's
``BaseMultilayerPerceptron`` does, turns one ``fit`` into one engine task (a pack of
one), and stores the engine's result as scikit-learn's fitted attributes. The search
classes build their (candidate, fold) tasks through the same :meth:`_build_task`, so
a model trained in a search is the model ``fit`` would train.
"""

from __future__ import annotations

import copy
import math
import operator
import warnings
from abc import ABC, abstractmethod

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from .._device import resolve_device, resolve_dtype
from .._sklearn_compat import (
    AdamOptimizer,
    BaseMultilayerPerceptron,
    SGDOptimizer,
    StrOptions,
    _check_sample_weight,
)
from ..engine import (
    DeviceData,
    Hyperparams,
    ModelResult,
    ModelState,
    ModelTask,
    train_models,
)
from ..engine import functional as F
from ..engine.activations import HIDDEN, OUTPUT
from ..engine.convergence import ConvergenceTracker
from ._to_torch import to_torch_module

_STOCHASTIC_SOLVERS = ("sgd", "adam")


def _layer_size(size) -> int:
    """Return one hidden layer size as an int, refusing what NumPy's allocation does.

    scikit-learn allocates ``(fan_in, size)`` weights with NumPy, which raises
    ``TypeError`` for floats (even integral ones) and booleans.
    """
    if isinstance(size, (bool, np.bool_)):
        raise TypeError("an integer is required")
    return operator.index(size)


#: scikit-learn's error for a fit whose weights are not finite.
NON_FINITE_WEIGHTS = (
    "Solver produced non-finite parameter weights. The input data may contain large "
    "values and need to be preprocessed."
)


def _check_representable(name: str, array: np.ndarray | None, dtype) -> None:
    """Refuse values that overflow the training dtype, with scikit-learn's error.

    Validation checked the data in float64; a float32 model would see such values as
    infinity, and its weights could not stay finite. scikit-learn trains on them in
    float64 and raises ``NON_FINITE_WEIGHTS`` when its weights overflow; the error
    here is that one (same type, same words, so code that handles it keeps
    working), followed by the reason and the way out: ``dtype="float64"``.
    """
    if array is None or array.size == 0 or dtype == torch.float64:
        return
    if not np.issubdtype(array.dtype, np.floating) or array.dtype.itemsize <= 4:
        return
    limit = torch.finfo(dtype).max
    if array.max() > limit or array.min() < -limit:
        raise ValueError(
            f"{NON_FINITE_WEIGHTS} Input {name} holds values beyond the range of "
            f"{_dtype_name(dtype)}, the training dtype (|value| > {limit:.1e}); scale "
            "it, or pass dtype='float64' to train on it as scikit-learn does."
        )


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


#: Hyper-parameters that the engine holds in the training dtype.
_DTYPE_HYPERPARAMS = ("alpha", "learning_rate_init")


class BaseMLP(BaseEstimator, ABC):
    """Base class for torchhpo's multi-layer perceptrons.

    Do not instantiate it; use :class:`~torchhpo.MLPClassifier` or
    :class:`~torchhpo.MLPRegressor`.
    """

    _parameter_constraints: dict = {
        **BaseMultilayerPerceptron._parameter_constraints,
        "device": [str, torch.device],
        "dtype": [StrOptions({"float32", "float64"}), torch.dtype],
    }

    @abstractmethod
    def __init__(self, **params):
        for name, value in params.items():
            setattr(self, name, value)

    # -- the engine seam ---------------------------------------------------------
    def _checked_hidden_layer_sizes(self) -> list:
        """Return ``hidden_layer_sizes`` as a list, rejecting sizes below 1.

        The check scikit-learn's ``_fit`` makes before it validates the data.
        """
        sizes = self.hidden_layer_sizes
        if not hasattr(sizes, "__iter__"):
            sizes = [sizes]
        sizes = list(sizes)
        if np.any(np.array(sizes) <= 0):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return sizes

    def _hidden_layer_sizes(self) -> list[int]:
        """Return the hidden layer sizes as Python ints.

        Raises
        ------
        ValueError
            If a size is below 1.
        TypeError
            If a size is not an integer (``(10.0,)``), as scikit-learn, whose weight
            allocation raises ``'float' object cannot be interpreted as an integer``.
        """
        return [_layer_size(s) for s in self._checked_hidden_layer_sizes()]

    def _hyperparams(self) -> Hyperparams:
        """Return this estimator's training hyper-parameters for the engine."""
        return Hyperparams(
            hidden_layer_sizes=tuple(self._hidden_layer_sizes()),
            activation=self.activation,
            solver=self.solver,
            alpha=float(self.alpha),
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
            learning_rate_init=float(self.learning_rate_init),
            power_t=float(self.power_t),
            max_iter=int(self.max_iter),
            shuffle=bool(self.shuffle),
            tol=float(self.tol),
            momentum=float(self.momentum),
            nesterovs_momentum=bool(self.nesterovs_momentum),
            early_stopping=bool(self.early_stopping),
            validation_fraction=float(self.validation_fraction),
            beta_1=float(self.beta_1),
            beta_2=float(self.beta_2),
            epsilon=float(self.epsilon),
            n_iter_no_change=self.n_iter_no_change,
            max_fun=int(self.max_fun),
        )

    def _build_task(
        self,
        Y: np.ndarray,
        train_index: np.ndarray,
        *,
        incremental: bool = False,
        init: ModelState | None = None,
    ) -> ModelTask:
        """Describe the training of this estimator on rows ``train_index`` of ``Y``.

        Draws the model's seed, then (with ``early_stopping``) the validation split,
        from ``random_state`` as scikit-learn does, so equal ``random_state`` values
        give equal models in ``fit`` and in a search.

        Parameters
        ----------
        Y : ndarray of shape (n_samples, n_outputs)
            Encoded targets of the whole data (used to stratify the split).
        train_index : ndarray of int
            Rows this model may use.
        incremental : bool
            ``partial_fit`` semantics.
        init : ModelState, optional
            Starting weights and counters.
        """
        hyper = self._hyperparams()
        random_state = check_random_state(self.random_state)
        seed = int(random_state.randint(np.iinfo(np.int32).max))
        val_index = None
        train_index = np.asarray(train_index, dtype=np.int64)
        if hyper.early_stopping and hyper.solver in _STOCHASTIC_SOLVERS:
            if incremental:
                raise ValueError("partial_fit does not support early_stopping=True")
            stratify = (
                Y[train_index] if is_classifier(self) and Y.shape[1] == 1 else None
            )
            train_index, val_index = train_test_split(
                train_index,
                random_state=random_state,
                test_size=hyper.validation_fraction,
                stratify=stratify,
            )
            if len(val_index) < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset."
                )
        return ModelTask(
            hyper=hyper,
            train_index=train_index,
            val_index=val_index,
            seed=seed,
            init=init,
            incremental=incremental,
        )

    @abstractmethod
    def _target_kind(self) -> str:
        """Return the engine's target kind for the fitted targets."""

    def _device_data(self, X, Y, sample_weight) -> DeviceData:
        """Return validated data on the training device, in the training dtype.

        Raises
        ------
        ValueError
            If a value of ``X``, ``y`` or ``sample_weight`` overflows the training
            dtype (float32 holds magnitudes up to about 3.4e38).
        """
        if sp.issparse(X):
            X = X.toarray()
        dtype = resolve_dtype(self.dtype)
        for name, array in (("X", X), ("y", Y), ("sample_weight", sample_weight)):
            _check_representable(name, array, dtype)
        return DeviceData.from_numpy(
            X,
            Y,
            target_kind=self._target_kind(),
            loss=self.loss,
            sample_weight=sample_weight,
            device=resolve_device(self.device),
            dtype=dtype,
        )

    # -- fitting -----------------------------------------------------------------
    def _fit(self, X, y, sample_weight=None, incremental=False):
        self._checked_hidden_layer_sizes()
        resolve_device(self.device)
        self._check_training_dtype()
        first_pass = not hasattr(self, "coefs_") or (
            not self.warm_start and not incremental
        )
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        hidden = self._hidden_layer_sizes()
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        n_outputs = Y.shape[1]
        if first_pass:
            self._initialize(n_outputs, [X.shape[1], *hidden, n_outputs])
        elif [c.shape[1] for c in self.coefs_[:-1]] != hidden:
            raise ValueError(
                "hidden_layer_sizes changed since the previous fit "
                f"({[c.shape[1] for c in self.coefs_[:-1]]} -> {hidden}); "
                "set warm_start=False to refit from scratch."
            )
        self.n_outputs_ = n_outputs

        init = None
        if not first_pass:
            init = self._model_state(continue_optimizer=incremental)
        task = self._build_task(
            Y, np.arange(X.shape[0]), incremental=incremental, init=init
        )
        data = self._device_data(X, Y, sample_weight)
        result = self._train_one(data, task)
        self._apply_result(result, task=task, dtype=X.dtype)
        return self

    def _check_training_dtype(self) -> None:
        """Refuse hyper-parameters the training dtype cannot hold (``alpha=1e300``).

        scikit-learn trains in float64, where such values are finite; in float32
        they would be infinity. The error names the parameter and the way out.
        """
        dtype = resolve_dtype(self.dtype)
        limit = torch.finfo(dtype).max
        for name in _DTYPE_HYPERPARAMS:
            value = getattr(self, name)
            if abs(value) > limit:
                raise ValueError(
                    f"{name}={value!r} is beyond the range of {_dtype_name(dtype)}, "
                    f"the training dtype (|value| > {limit:.1e}); pass "
                    f"dtype='float64' to train with it as scikit-learn does."
                )

    def _train_one(self, data: DeviceData, task: ModelTask) -> ModelResult:
        """Train one task (a pack of one), as scikit-learn's ``_fit`` would.

        Raises
        ------
        MemoryError
            If the weights or buffers cannot be allocated, where NumPy (and so
            scikit-learn) raises ``MemoryError``; the engine reports the model as
            failed instead of raising torch's ``RuntimeError``.
        """
        (result,) = train_models(data, [task], keep_optimizer_state=True)
        if result.out_of_memory:
            raise MemoryError(
                f"{result.failure} (hidden_layer_sizes={self.hidden_layer_sizes!r})"
            )
        return result

    def _initialize(self, n_outputs: int, layer_units: list[int]) -> None:
        """Set the attributes of a first fit (scikit-learn's ``_initialize``)."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._out_activation()
        for name in ("coefs_", "intercepts_", "_optimizer_state", "_epochs_seen"):
            if hasattr(self, name):
                delattr(self, name)
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _model_state(self, continue_optimizer: bool) -> ModelState:
        """Return the fitted weights and counters as an engine starting state."""
        stochastic = self.solver in _STOCHASTIC_SOLVERS
        optimizer = (
            getattr(self, "_optimizer_state", None) if continue_optimizer else None
        )
        if optimizer is not None and optimizer.solver != self.solver:
            optimizer = None
        return ModelState(
            coefs=[np.array(c) for c in self.coefs_],
            intercepts=[np.array(b) for b in self.intercepts_],
            optimizer=optimizer,
            t=int(getattr(self, "t_", 0)),
            epochs_seen=int(getattr(self, "_epochs_seen", 0)),
            loss_curve=list(getattr(self, "loss_curve_", []) or [])
            if stochastic
            else [],
            best_loss=getattr(self, "best_loss_", np.inf) if stochastic else np.inf,
            validation_scores=getattr(self, "validation_scores_", None),
            best_validation_score=getattr(self, "best_validation_score_", None),
            no_improvement_count=int(getattr(self, "_no_improvement_count", 0)),
        )

    def _apply_result(
        self,
        result: ModelResult,
        *,
        task: ModelTask | None = None,
        dtype: np.dtype | None = None,
    ) -> None:
        """Store an engine result as scikit-learn's fitted attributes.

        Parameters
        ----------
        result : ModelResult
            What the engine returned for this estimator's task.
        task : ModelTask, optional
            The task trained; with ``verbose`` it lets the progress lines include
            scikit-learn's stopping and learning-rate messages.
        dtype : numpy dtype, optional
            Store ``coefs_`` / ``intercepts_`` in this dtype; scikit-learn keeps them
            in the dtype of the validated ``X`` (float64 or float32), whatever the
            training precision.
        """
        if result.out_of_memory:  # before any attribute changes, as NumPy's
            raise MemoryError(result.failure)
        state = result.state
        self.coefs_ = [np.asarray(c, dtype=dtype) for c in state.coefs]
        self.intercepts_ = [np.asarray(b, dtype=dtype) for b in state.intercepts]
        self.n_iter_ = result.n_iter
        self.loss_ = result.loss
        if self.solver in _STOCHASTIC_SOLVERS:
            self.t_ = state.t
            self.loss_curve_ = list(state.loss_curve)
            self._no_improvement_count = state.no_improvement_count
            self._epochs_seen = state.epochs_seen
            self._optimizer_state = state.optimizer
            if self.early_stopping:
                self.validation_scores_ = list(state.validation_scores or [])
                self.best_validation_score_ = state.best_validation_score
                self.best_loss_ = None
            else:
                self.best_loss_ = state.best_loss
            if self.verbose:
                self._print_progress(state, task)
        message = result.convergence_message
        if result.failure is not None:
            raise ValueError(result.failure)
        if message is not None:
            warnings.warn(message, ConvergenceWarning, stacklevel=3)

    def _loss_grad_lbfgs(
        self,
        packed_coef_inter: np.ndarray,
        X,
        y,
        sample_weight=None,
        activations=None,
        deltas=None,
        coef_grads=None,
        intercept_grads=None,
    ) -> tuple[float, np.ndarray]:
        """Return the regularised loss and its gradient at flat weights, in float64.

        scikit-learn's private helper of the same name and signature (its
        ``test_gradient`` checks it against finite differences), computed by the
        engine's own forward, loss and backward functions for a pack of one, so
        the check holds torchhpo's gradients. The work lists scikit-learn fills
        (``activations``, ``deltas``, ``coef_grads``, ``intercept_grads``) are
        accepted and left alone.

        Parameters
        ----------
        packed_coef_inter : ndarray of shape (n_weights,)
            ``coefs_`` then ``intercepts_``, each raveled, as scikit-learn packs
            them; the shapes are those of the fitted ``coefs_`` / ``intercepts_``.
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            Encoded targets (one column per output unit).
        sample_weight : ndarray of shape (n_samples,), optional

        Returns
        -------
        loss : float
        grad : ndarray of shape (n_weights,)
        """
        check_is_fitted(self)
        shapes = [c.shape for c in self.coefs_] + [b.shape for b in self.intercepts_]
        sizes = [int(np.prod(shape)) for shape in shapes]
        flat = np.asarray(packed_coef_inter, dtype=np.float64)
        parts = [
            torch.from_numpy(part.reshape(shape).copy())
            for part, shape in zip(
                np.split(flat, np.cumsum(sizes)[:-1]), shapes, strict=True
            )
        ]
        n_layers = len(self.coefs_)
        weights = [p.unsqueeze(0) for p in parts[:n_layers]]
        biases = [p.view(1, 1, -1) for p in parts[n_layers:]]
        x = torch.as_tensor(np.asarray(X, dtype=np.float64)).unsqueeze(0)
        Y = np.asarray(y, dtype=np.float64).reshape(x.shape[1], -1)
        target = torch.from_numpy(Y).unsqueeze(0)
        if sample_weight is None:
            weight = torch.ones(1, x.shape[1], dtype=torch.float64)
        else:
            weight = torch.as_tensor(np.asarray(sample_weight, dtype=np.float64))
            weight = weight.unsqueeze(0)
        denom = weight.sum(dim=1)
        alpha = torch.full((1, 1, 1), float(self.alpha), dtype=torch.float64)
        runs = [(0, 1, self.activation)]
        out = self.out_activation_
        with torch.no_grad():
            acts = F.forward(x, weights, biases, runs, out)
            loss = F.per_model_loss(acts[-1], target, weight, denom, self.loss, out)
            loss = loss + 0.5 * alpha.view(1) * F.squared_weight_sum(weights) / denom
            coef_g, intercept_g = F.backward(
                acts, target, weight, denom, weights, alpha, runs
            )
        grad = np.hstack([g.reshape(-1).numpy() for g in coef_g + intercept_g])
        return float(loss.item()), grad

    @property
    def _optimizer(self):
        """scikit-learn's optimizer object as a stochastic fit leaves it.

        A view of the fitted optimizer state (``learning_rate`` as the schedule
        left it, Adam's ``t`` and moments, SGD's velocities), built on access.
        Absent, as in scikit-learn, before a stochastic fit.
        """
        optimizer = None
        if hasattr(self, "coefs_"):
            optimizer = self._sklearn_optimizer(self.coefs_ + self.intercepts_)
        if optimizer is None:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute '_optimizer'"
            )
        return optimizer

    def _print_progress(self, state: ModelState, task: ModelTask | None) -> None:
        """Print scikit-learn's verbose lines for the epochs just trained.

        The engine trains silently; afterwards the lines of each epoch (loss,
        validation score, and the optimizer's messages when the stopping rule fires)
        are rebuilt by replaying scikit-learn's rule on the recorded curves.
        """
        first = len(state.loss_curve) - self.n_iter_
        scores = state.validation_scores or []
        tracker = None
        if task is not None:
            start = task.init if task.init is not None else ModelState([], [])
            tracker = ConvergenceTracker([task.hyper], [start], [task.incremental])
            n_train = np.array([len(task.train_index)])
        for i in range(first, len(state.loss_curve)):
            print(f"Iteration {i - first + 1}, loss = {state.loss_curve[i]:.8f}")
            val = None
            if self.early_stopping and i < len(scores):
                val = np.array([scores[i]], dtype=float)
                print(f"Validation score: {scores[i]:f}")
            if tracker is not None:
                message = self._stopping_message(
                    tracker, np.array([state.loss_curve[i]]), val, n_train
                )
                if message:
                    print(message)

    def _stopping_message(self, tracker, losses, val_scores, n_train) -> str | None:
        """Apply one epoch to ``tracker``; return the optimizer's verbose message.

        The messages of scikit-learn's ``trigger_stopping`` when the epoch ends
        ``n_iter_no_change`` epochs without a ``tol`` improvement.
        """
        rate = tracker.learning_rate[0]
        outcome = tracker.end_epoch(losses, val_scores, n_train)
        adaptive = self.solver == "sgd" and self.learning_rate == "adaptive"
        lowered = adaptive and tracker.learning_rate[0] < rate
        stopped = bool(outcome.converged[0]) and (
            tracker.no_improvement[0] > tracker.n_iter_no_change[0]
        )
        if not (lowered or stopped):
            return None
        what = "Validation score" if self.early_stopping else "Training loss"
        message = (
            f"{what} did not improve more than tol={self.tol:f} for "
            f"{int(self.n_iter_no_change)} consecutive epochs."
        )
        if lowered:
            return f"{message} Setting learning rate to {tracker.learning_rate[0]:f}"
        if adaptive:
            return f"{message} Learning rate too small. Stopping."
        return f"{message} Stopping."

    def fit(self, X, y, sample_weight=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values (class labels in classification, real numbers in
            regression).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._validate_params()
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    # -- prediction --------------------------------------------------------------
    def _forward_pass_fast(self, X, check_input: bool = True) -> np.ndarray:
        """Return the output layer's activations for ``X`` (scikit-learn's shapes)."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        activation = X
        hidden = HIDDEN[self.activation].predict
        last = self.n_layers_ - 2
        for i in range(self.n_layers_ - 1):
            activation = np.asarray(activation @ self.coefs_[i]) + self.intercepts_[i]
            if i != last:
                activation = hidden(activation, np)
        return OUTPUT[self.out_activation_].predict(activation, np)

    # -- interoperability --------------------------------------------------------
    def _sklearn_params(self) -> dict:
        params = self.get_params(deep=False)
        params.pop("device")
        params.pop("dtype")
        return params

    @abstractmethod
    def _sklearn_class(self):
        """Return the matching scikit-learn estimator class."""

    def to_sklearn(self):
        """Return a fitted scikit-learn estimator holding the same weights.

        Its predictions agree with this model's, and it needs no torch to load or
        run (deployment). It carries the training state too (counters, loss curve,
        the stochastic optimizer's moments), so its own ``partial_fit`` or
        ``warm_start`` fit continues where this model stopped.

        Returns
        -------
        sklearn.neural_network.MLPClassifier or MLPRegressor
            A new estimator; it shares no mutable state with this one.
        """
        check_is_fitted(self)
        est = self._sklearn_class()(**self._sklearn_params())
        skip = {"_optimizer_state", "_epochs_seen"}
        for name, value in vars(self).items():
            if name.endswith("_") and not name.startswith("__") and name not in skip:
                setattr(est, name, copy.deepcopy(value))
        for name in ("_no_improvement_count", "_label_binarizer"):
            if hasattr(self, name):
                setattr(est, name, copy.deepcopy(getattr(self, name)))
        est.coefs_ = [np.array(c) for c in self.coefs_]
        est.intercepts_ = [np.array(b) for b in self.intercepts_]
        # What scikit-learn's _initialize / _fit_stochastic leave on a fitted model:
        # the best weights (restored by a later early-stopping fit) and the optimizer.
        est._best_coefs = [c.copy() for c in est.coefs_]
        est._best_intercepts = [b.copy() for b in est.intercepts_]
        optimizer = self._sklearn_optimizer(est.coefs_ + est.intercepts_)
        if optimizer is not None:
            est._optimizer = optimizer
        return est

    def to_torch(
        self,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> torch.nn.Module:
        """Return a ``torch.nn.Module`` holding this model's weights.

        Its forward pass gives ``predict_proba``'s output (classifier; two columns
        for a binary model, as ``predict_proba``) or ``predict``'s (regressor). It
        is a ``torch.nn.Sequential`` of ``nn.Linear`` layers and torch activations
        in the dtype the model trained in (``dtype``, float32 by default, whatever
        the dtype of ``coefs_``): it trains further with any torch optimizer and
        exports with ``torch.export`` and ``torch.onnx.export``. For a Pipeline,
        call it on the MLP step (``pipe[-1].to_torch()``): the module takes the
        preprocessed features; the earlier steps are not part of it.

        Parameters
        ----------
        device : str or torch.device, optional
            Where the module's parameters live; default: this model's ``device``.
        dtype : {"float32", "float64"} or torch.dtype, optional
            The module's dtype; default: the dtype the model trained in.

        Returns
        -------
        torch.nn.Sequential
            A copy of the weights; training it leaves this model unchanged.
        """
        return to_torch_module(self, device, dtype)

    def _sklearn_optimizer(self, params: list[np.ndarray]):
        """Return this model's optimizer state as scikit-learn's optimizer object.

        Parameters
        ----------
        params : list of ndarray
            The scikit-learn estimator's ``coefs_ + intercepts_``; the moments take
            their shapes and dtypes.

        Returns
        -------
        AdamOptimizer, SGDOptimizer or None
            None when there is no stochastic optimizer state for the current solver.
        """
        state = getattr(self, "_optimizer_state", None)
        if state is None or state.solver != self.solver:
            return None

        def like_params(arrays):
            return [
                np.asarray(a, dtype=p.dtype).reshape(p.shape)
                for a, p in zip(arrays, params, strict=True)
            ]

        if state.solver == "adam":
            optimizer = AdamOptimizer(
                params, self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon
            )
            optimizer.t = state.step
            optimizer.ms = like_params(state.first)
            optimizer.vs = like_params(state.second)
            if state.step:
                optimizer.learning_rate = (
                    self.learning_rate_init
                    * math.sqrt(1 - self.beta_2**state.step)
                    / (1 - self.beta_1**state.step)
                )
            return optimizer
        optimizer = SGDOptimizer(
            params,
            self.learning_rate_init,
            self.learning_rate,
            self.momentum,
            self.nesterovs_momentum,
            self.power_t,
        )
        optimizer.learning_rate = state.learning_rate
        optimizer.velocities = like_params(state.first)
        return optimizer

    @classmethod
    def from_sklearn(cls, estimator, **options):
        """Return an unfitted torchhpo estimator with ``estimator``'s parameters.

        Parameters
        ----------
        estimator : sklearn.neural_network.MLPClassifier or MLPRegressor
            The scikit-learn counterpart of ``cls`` (fitted or not; only its
            parameters are taken).
        **options
            torchhpo options (``device``, ``dtype``).

        Returns
        -------
        MLPClassifier or MLPRegressor
            An unfitted estimator of class ``cls``.

        Raises
        ------
        TypeError
            If ``estimator`` is not an instance of ``cls``'s scikit-learn
            counterpart.
        """
        expected = cls()._sklearn_class()
        if not isinstance(estimator, expected):
            raise TypeError(
                f"{cls.__name__}.from_sklearn expects a scikit-learn "
                f"{expected.__name__}, got {type(estimator).__name__} instead."
            )
        return cls(**estimator.get_params(deep=False), **options)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags
