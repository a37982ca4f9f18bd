"""OptunaSearchCV: ``optuna_integration.OptunaSearchCV``, with trials trained in packs.

optuna_integration's search runs ``study.optimize``: one trial after another, each a
``cross_validate`` (or, with ``enable_pruning``, ``partial_fit`` one epoch at a time
on every fold, reporting the mean test score after each epoch). This one asks the
study for a **batch** of trials (``study.ask``), trains every (trial, fold) model of
the batch at once through the fused :class:`~torchhpo.search._scheduler.FusedScheduler`,
tells each trial's result (``study.tell``), and asks the next batch, so the study's
sampler learns from every finished batch.

With ``enable_pruning``, the models train as ``max_iter`` ``partial_fit`` epochs;
after each epoch the engine scores every model on its CV test fold and
:class:`_TrialPruning` reports each trial's mean over its folds to the trial
(``trial.report``) and asks the study's pruner (``trial.should_prune``); a pruned
trial's models leave their packs at once, and the trial ends ``PRUNED``.

What is recorded per trial (user attributes, their order, the value, the state) is
what optuna_integration records, so ``cv_results_`` and ``trials_dataframe()`` have
its layout.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from contextlib import ExitStack, nullcontext

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv
from sklearn.model_selection._validation import _warn_or_raise_about_fit_failures
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils.metadata_routing import _routing_enabled
from sklearn.utils.metaestimators import _safe_split
from sklearn.utils.parallel import Parallel
from sklearn.utils.validation import _num_samples, check_is_fitted

try:
    import optuna
    from optuna.study import StudyDirection
    from optuna.trial import FrozenTrial, TrialState
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "torchhpo.OptunaSearchCV needs Optuna: pip install 'torchhpo[optuna]'."
    ) from exc

from .._device import resolve_device, resolve_devices, resolve_dtype
from ..engine.policy import EpochPolicy
from ..engine.trainer import CPU_PACK_SIZE
from ._estimators import fused_form
from ._estimators import refit as refit_estimator
from ._optuna_space import check_distributions, estimator_params
from ._scheduler import FusedScheduler

_logger = logging.getLogger(__name__)

#: Models a CUDA device trains per batch of trials (packs there hold thousands).
CUDA_MODELS_PER_BATCH = 512
#: Fewest trials per automatic batch: TPE's first 10 trials are random anyway.
MIN_TRIALS_PER_BATCH = 10
#: An automatic batch is at most this share of ``n_trials``, so the sampler
#: learns at least this many times over.
MIN_ROUNDS = 4


class OptunaSearchCV(BaseEstimator):
    """Hyper-parameter search with Optuna, training each batch of trials fused.

    A drop-in for ``optuna_integration.OptunaSearchCV`` (Optuna 5): the same
    arguments, defaults, attributes and per-trial records, and the same estimator
    forms as :class:`~torchhpo.GridSearchCV` (a torchhpo or scikit-learn MLP, a
    Pipeline ending in one; any other estimator is evaluated per fit, as
    optuna_integration does). Needs the ``optuna`` extra
    (``pip install 'torchhpo[optuna]'``).

    Trials are asked from the study in batches (``study.ask``); each batch's
    (trial, fold) models train together in packs and each trial is told
    (``study.tell``) before the next batch is asked, so the sampler (TPE by
    default, or the sampler of the given ``study``) learns from every finished
    batch. Trials of one batch are sampled without knowing each other's results:
    bigger batches fill the device better and finish sooner, smaller ones let the
    sampler learn more often (a batch of 1 is optuna_integration's sequential
    search). The pruner also sees only finished trials: with ``MedianPruner``,
    nothing is pruned until its ``n_startup_trials`` trials have completed.

    Parameters
    ----------
    estimator : estimator object
        The estimator to tune.
    param_distributions : dict of str to optuna.distributions.BaseDistribution
        The search space. ``hidden_layer_sizes`` is searched as strings of layer
        widths (``CategoricalDistribution(["100", "50,50"])``) or as integer
        ``hidden_layer_width`` and ``hidden_layer_depth`` parameters (see
        :mod:`torchhpo.search._optuna_space`); a categorical of tuples, which
        Optuna cannot store, is rejected with an error saying so.
    cv : int, cross-validation generator or iterable, default=None
        As scikit-learn's (None: 5-fold, stratified for classifiers).
    enable_pruning : bool, default=False
        Train each trial by ``partial_fit`` for ``max_iter`` epochs, report the
        mean test-fold score after every epoch to the trial and stop the trial's
        models as soon as the study's pruner prunes it (state ``PRUNED``). The
        estimator must have ``partial_fit`` (an MLP with a stochastic solver), or
        be a Pipeline ending in an MLP (an extension: its earlier steps are fitted
        per fold, the fold's test rows scored through them). For MLPs the
        reported score is the estimator's own score (accuracy, or R² for
        regressors) whatever ``scoring`` is; the trial's final value uses
        ``scoring``.
    error_score : 'raise' or numeric, default=np.nan
        Score of a fit that fails. A trial whose folds all fail records
        ``error_score`` as every split score; with ``np.nan`` it ends ``FAIL``.
        With ``'raise'`` the fit's error ends the trial (``FAIL``) and is raised,
        unless it is one of ``catch``.
    max_iter : int, default=1000
        ``partial_fit`` epochs per fold with ``enable_pruning`` (else unused).
    n_jobs : int, default=None
        Parallel jobs for estimators evaluated per fit.
    n_trials : int or None, default=10
        Trials to run in this ``fit`` (None: until ``timeout``).
    random_state : int, RandomState instance or None, default=None
        Seeds ``subsample`` and, without ``study``, the TPE sampler, as in
        optuna_integration (the same seed gives the same sampler).
    refit : bool, default=True
        Refit the best parameters on the whole data as ``best_estimator_``.
    return_train_score : bool, default=False
        Also record training scores.
    scoring : str, callable or None, default=None
        A single scorer (``check_scoring``); None: the estimator's ``score``.
    study : optuna.study.Study, default=None
        The study to add trials to (direction ``maximize``); None creates one in
        memory with a seeded ``TPESampler``. A study with storage (e.g.
        ``sqlite:///search.db``) records every trial as it finishes: a running
        search can be watched with optuna-dashboard, and a killed search is
        continued by loading the study (``load_if_exists=True``) and fitting again
        with the remaining ``n_trials``.
    subsample : float or int, default=1.0
        Share (float) or number (int) of samples used for the search.
    timeout : float or None, default=None
        Seconds after which no new batch is started.
    verbose : int, default=0
        Log level of this search's messages (1: info, 2: debug).
    callbacks : list of callable, default=None
        Called as ``callback(study, frozen_trial)`` after each trial is told.
    catch : exception class or iterable of them, default=()
        Errors a trial may raise without stopping the search (the trial ends
        ``FAIL``).
    device, dtype, progress, max_pack_size, backend :
        torchhpo options, as in :class:`~torchhpo.GridSearchCV` (pruning needs
        ``backend="local"``). Fit times are each model's share of its pack's
        time, as there.
    checkpoint : None
        Not supported: the study's storage is this search's record. Pass
        ``study=optuna.create_study(storage="sqlite:///search.db",
        study_name=..., direction="maximize", load_if_exists=True)`` instead; any
        other value raises ``ValueError`` at ``fit``.
    trials_per_batch : int or None, default=None
        Trials asked from the study at once. None chooses from the device: on a
        CPU, enough trials to fill one pack of ``CPU_PACK_SIZE`` models per
        worker thread; on CUDA, ``CUDA_MODELS_PER_BATCH`` models per device; in
        both cases at least 10 trials and at most a quarter of ``n_trials``.

    Attributes
    ----------
    best_estimator_ : estimator
        Refit on the whole data with ``best_params_`` (of the class passed).
    best_index_ : int
        ``best_trial_.number``.
    best_params_ : dict
        The study's best parameters (as Optuna stored them).
    best_score_ : float
        The study's best value (mean cross-validated score).
    best_trial_ : optuna.trial.FrozenTrial
    cv_results_ : dict of str to list
        Every trial's user attributes, key by key.
    n_splits_ : int
    n_trials_ : int
        Trials in the study.
    refit_time_ : float
    sample_indices_ : ndarray
    scorer_ : callable
    study_ : optuna.study.Study
    trials_ : list of optuna.trial.FrozenTrial
    user_attrs_ : dict
        The study's user attributes.

    Examples
    --------
    >>> import optuna
    >>> from sklearn.datasets import load_digits
    >>> from torchhpo import MLPClassifier, OptunaSearchCV
    >>> X, y = load_digits(return_X_y=True)
    >>> space = {
    ...     "alpha": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True),
    ...     "hidden_layer_sizes": optuna.distributions.CategoricalDistribution(
    ...         ["100", "50,50"]),
    ... }
    >>> search = OptunaSearchCV(
    ...     MLPClassifier(max_iter=50), space, n_trials=20, random_state=0
    ... ).fit(X / 16, y)  # doctest: +SKIP
    """

    _required_parameters = ["estimator", "param_distributions"]

    def __init__(
        self,
        estimator,
        param_distributions: Mapping,
        *,
        cv=None,
        enable_pruning: bool = False,
        error_score=np.nan,
        max_iter: int = 1000,
        n_jobs: int | None = None,
        n_trials: int | None = 10,
        random_state=None,
        refit: bool = True,
        return_train_score: bool = False,
        scoring=None,
        study: optuna.study.Study | None = None,
        subsample: float | int = 1.0,
        timeout: float | None = None,
        verbose: int = 0,
        callbacks: list[Callable] | None = None,
        catch: Iterable[type[Exception]] | type[Exception] = (),
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        progress: bool = True,
        max_pack_size: int | None = None,
        backend: str = "local",
        checkpoint: str | os.PathLike | None = None,
        trials_per_batch: int | None = None,
    ):
        self.estimator = estimator
        self.param_distributions = param_distributions
        self.cv = cv
        self.enable_pruning = enable_pruning
        self.error_score = error_score
        self.max_iter = max_iter
        self.n_jobs = n_jobs
        self.n_trials = n_trials
        self.random_state = random_state
        self.refit = refit
        self.return_train_score = return_train_score
        self.scoring = scoring
        self.study = study
        self.subsample = subsample
        self.timeout = timeout
        self.verbose = verbose
        self.callbacks = callbacks
        self.catch = catch
        self.device = device
        self.dtype = dtype
        self.progress = progress
        self.max_pack_size = max_pack_size
        self.backend = backend
        self.checkpoint = checkpoint
        self.trials_per_batch = trials_per_batch

    # -- the attributes optuna_integration derives from the study ---------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            tags.estimator_type = self.estimator.__sklearn_tags__().estimator_type
        except AttributeError:
            pass
        return tags

    def _check_is_fitted(self) -> None:
        attributes = ["n_splits_", "sample_indices_", "scorer_", "study_"]
        if self.refit:
            attributes += ["best_estimator_", "refit_time_"]
        check_is_fitted(self, attributes)

    @property
    def best_index_(self) -> int:
        """Number of the best trial (``best_trial_.number``)."""
        return self.best_trial_.number

    @property
    def best_params_(self) -> dict:
        """Parameters of the best trial in the study."""
        self._check_is_fitted()
        return self.study_.best_params

    @property
    def best_score_(self) -> float:
        """Mean cross-validated score of the best trial."""
        self._check_is_fitted()
        return self.study_.best_value

    @property
    def best_trial_(self) -> FrozenTrial:
        """Best trial in the study."""
        self._check_is_fitted()
        return self.study_.best_trial

    @property
    def classes_(self):
        """Class labels of ``best_estimator_``."""
        self._check_is_fitted()
        return self.best_estimator_.classes_

    @property
    def cv_results_(self) -> dict:
        """Each trial's user attributes, collected key by key over the trials.

        Keys in order of first appearance; a trial without a key (one that failed
        before it was scored) holds NaN there.
        """
        attrs = [trial.user_attrs for trial in self.trials_]
        keys: dict = {}
        for item in attrs:
            keys.update(dict.fromkeys(item))
        return {key: [item.get(key, np.nan) for item in attrs] for key in keys}

    @property
    def n_trials_(self) -> int:
        """Number of trials in the study."""
        return len(self.trials_)

    @property
    def trials_(self) -> list[FrozenTrial]:
        """All trials in the study."""
        self._check_is_fitted()
        return self.study_.trials

    @property
    def user_attrs_(self) -> dict:
        """User attributes of the study."""
        self._check_is_fitted()
        return self.study_.user_attrs

    @property
    def trials_dataframe(self) -> Callable:
        """The study's ``trials_dataframe``."""
        self._check_is_fitted()
        return self.study_.trials_dataframe

    @property
    def set_user_attr(self) -> Callable:
        """The study's ``set_user_attr``."""
        self._check_is_fitted()
        return self.study_.set_user_attr

    @property
    def score_samples(self) -> Callable:
        """``best_estimator_.score_samples``."""
        self._check_is_fitted()
        return self.best_estimator_.score_samples

    def decision_function(self, X, **kwargs):
        """Call ``decision_function`` on the best estimator."""
        self._check_is_fitted()
        return self.best_estimator_.decision_function(X, **kwargs)

    def inverse_transform(self, X, *args, **kwargs):
        """Call ``inverse_transform`` on the best estimator."""
        self._check_is_fitted()
        return self.best_estimator_.inverse_transform(X, *args, **kwargs)

    def predict(self, X, **kwargs):
        """Call ``predict`` on the best estimator."""
        self._check_is_fitted()
        return self.best_estimator_.predict(X, **kwargs)

    def predict_log_proba(self, X, **kwargs):
        """Call ``predict_log_proba`` on the best estimator."""
        self._check_is_fitted()
        return self.best_estimator_.predict_log_proba(X, **kwargs)

    def predict_proba(self, X, **kwargs):
        """Call ``predict_proba`` on the best estimator."""
        self._check_is_fitted()
        return self.best_estimator_.predict_proba(X, **kwargs)

    def transform(self, X, *args, **kwargs):
        """Call ``transform`` on the best estimator."""
        self._check_is_fitted()
        return self.best_estimator_.transform(X, *args, **kwargs)

    def score(self, X, y=None) -> float:
        """Return ``scorer_`` of the best estimator on ``X``, ``y``."""
        return self.scorer_(self.best_estimator_, X, y)

    # -- what the scheduler asks of a search -------------------------------------------
    def _engine_devices(self) -> list[torch.device] | None:
        """Devices the packs are spread over (None: each MLP's own device)."""
        return None if self.device is None else resolve_devices(self.device)

    def _mlp_device(self):
        """The device set on the MLPs (and ``best_estimator_``): the first listed."""
        if isinstance(self.device, list | tuple):
            return self.device[0]
        return self.device

    # -- checks ------------------------------------------------------------------------
    def _check_params(self) -> None:
        if not isinstance(self.param_distributions, Mapping):
            raise TypeError("param_distributions must be a mapping.")
        if not hasattr(self.estimator, "fit"):
            raise ValueError("estimator must be a scikit-learn estimator.")
        check_distributions(self.param_distributions)
        if self.enable_pruning and not (
            hasattr(self.estimator, "partial_fit") or _mlp_pipeline(self.estimator)
        ):
            raise ValueError("estimator must support partial_fit.")
        if self.max_iter <= 0:
            raise ValueError(f"max_iter must be > 0, got {self.max_iter}.")
        if self.study is not None and self.study.direction != StudyDirection.MAXIMIZE:
            raise ValueError("direction of study must be 'maximize'.")
        if self.checkpoint is not None:
            raise ValueError(
                f"OptunaSearchCV does not take checkpoint={self.checkpoint!r}: its "
                "record is the study. To continue a killed search, pass a study with "
                "storage, e.g. optuna.create_study(storage='sqlite:///search.db', "
                "study_name='search', direction='maximize', load_if_exists=True), "
                "and fit again with the remaining n_trials."
            )
        if self.trials_per_batch is not None and (
            not isinstance(self.trials_per_batch, numbers.Integral)
            or self.trials_per_batch < 1
        ):
            raise ValueError(
                "trials_per_batch must be a positive integer or None, got "
                f"{self.trials_per_batch!r}."
            )
        if self.backend not in ("local", "ray"):
            raise ValueError(
                f"The 'backend' parameter must be 'local' or 'ray', got "
                f"{self.backend!r}."
            )
        if self.enable_pruning and self.backend == "ray":
            raise ValueError(
                "enable_pruning=True needs backend='local': the Ray backend cannot "
                "stop models per epoch."
            )
        if self.device is not None:
            resolve_devices(self.device)
        if self.dtype is not None:
            resolve_dtype(self.dtype)

    def _batch_size(self, n_splits: int) -> int:
        """Trials per batch: the option, or what the device trains at once."""
        if self.trials_per_batch is not None:
            return int(self.trials_per_batch)
        if self.device is not None:
            devices = resolve_devices(self.device)
        else:
            devices = [resolve_device(getattr(self.estimator, "device", "auto"))]
        if devices[0].type == "cuda":
            models = CUDA_MODELS_PER_BATCH * len(devices)
        else:
            models = (self.max_pack_size or CPU_PACK_SIZE) * torch.get_num_threads()
        size = max(models // max(n_splits, 1), MIN_TRIALS_PER_BATCH)
        if self.n_trials is not None:
            size = min(size, max(-(-self.n_trials // MIN_ROUNDS), MIN_TRIALS_PER_BATCH))
        return max(size, 1)

    # -- fit -------------------------------------------------------------------------
    def fit(self, X, y=None, groups=None, **fit_params) -> OptunaSearchCV:
        """Run the search: batches of trials, each trained fused, then refit.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            Target.
        groups : array-like of shape (n_samples,), default=None
            Group labels for the CV splitter.
        **fit_params : dict
            Parameters passed to the estimator's ``fit`` (e.g. ``sample_weight``,
            split along with ``X``).

        Returns
        -------
        self : OptunaSearchCV
        """
        self._check_params()
        random_state = check_random_state(self.random_state)
        max_samples = self.subsample
        n_samples = _num_samples(X)
        old_level = _logger.level
        _logger.setLevel(
            logging.DEBUG
            if self.verbose > 1
            else logging.INFO
            if self.verbose > 0
            else logging.WARNING
        )
        try:
            self.sample_indices_ = np.arange(n_samples)
            if isinstance(max_samples, float):
                max_samples = int(max_samples * n_samples)
            if max_samples < n_samples:
                self.sample_indices_ = random_state.choice(
                    self.sample_indices_, max_samples, replace=False
                )
                self.sample_indices_.sort()
            X_res = _index(X, self.sample_indices_)
            y_res = _index(y, self.sample_indices_)
            groups_res = _index(groups, self.sample_indices_)
            fit_params_res = _index_params(X, fit_params, self.sample_indices_)

            cv = check_cv(self.cv, y_res, classifier=is_classifier(self.estimator))
            self.n_splits_ = cv.get_n_splits(X_res, y_res, groups=groups_res)
            self.scorer_ = check_scoring(self.estimator, scoring=self.scoring)
            if self.study is None:
                seed = random_state.randint(0, np.iinfo("int32").max)
                sampler = optuna.samplers.TPESampler(seed=seed)
                self.study_ = optuna.create_study(direction="maximize", sampler=sampler)
            else:
                self.study_ = self.study
            splits = list(cv.split(X_res, y_res, groups_res))
            _logger.info(
                f"Searching the best hyperparameters using {len(X_res)} samples..."
            )
            _Optimizer(self, X_res, y_res, splits, fit_params_res).run()
            _logger.info("Finished hyperparameter search!")
            if self.refit:
                self._refit(X, y, **fit_params)
        finally:
            _logger.setLevel(old_level)
        return self

    def _refit(self, X, y=None, **fit_params) -> OptunaSearchCV:
        """Fit the best parameters on the whole data as ``best_estimator_``."""
        best = clone(self.estimator)
        try:
            best.set_params(**estimator_params(self.study_.best_params))
        except ValueError as e:
            _logger.exception(e)
        _logger.info(f"Refitting the estimator using {_num_samples(X)} samples...")
        start = time.time()
        self.best_estimator_ = refit_estimator(
            best, X, y, fit_params, self._mlp_device(), self.dtype
        )
        self.refit_time_ = time.time() - start
        _logger.info(f"Finished refitting! (elapsed time: {self.refit_time_:.3f} sec.)")
        return self


def _mlp_pipeline(estimator) -> bool:
    """Whether ``estimator`` is a Pipeline ending in an MLP (prunable here)."""
    form = fused_form(clone(estimator))
    return form is not None and bool(form.prefix)


def _index(values, indices):
    return None if values is None else _safe_indexing(values, indices)


def _index_params(X, fit_params: dict, indices) -> dict:
    """Subsample sample-aligned fit params, as optuna_integration does."""
    n = _num_samples(X)
    out = {}
    for key, value in fit_params.items():
        aligned = hasattr(value, "__len__") or hasattr(value, "shape")
        if aligned and not isinstance(value, str) and _num_samples(value) == n:
            out[key] = _safe_indexing(value, indices)
        else:
            out[key] = value
    return out


class _Optimizer:
    """The ask / train / tell loop of one ``OptunaSearchCV.fit``.

    Parameters
    ----------
    search : OptunaSearchCV
        The search (its options, ``study_`` and ``scorer_``).
    X, y : array-like
        The (subsampled) search data.
    splits : list of (train, test)
        The CV folds.
    fit_params : dict
        Parameters for the estimator's ``fit``.
    """

    def __init__(self, search: OptunaSearchCV, X, y, splits, fit_params) -> None:
        self.search = search
        self.study = search.study_
        self.X, self.y, self.splits = X, y, splits
        self.fit_params = fit_params
        self.n_splits = len(splits)
        catch = search.catch
        self.catch = tuple(catch) if isinstance(catch, Iterable) else (catch,)
        self.error_score = search.error_score
        self.epochs = search.max_iter if search.enable_pruning else None
        self.kwargs = dict(
            scorer=search.scorer_,
            fit_params=fit_params,
            score_params={},
            return_train_score=search.return_train_score,
            return_n_test_samples=True,
            return_times=True,
            return_parameters=False,
            error_score=search.error_score,
            verbose=0,
        )

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> None:
        """Ask, train and tell batches until ``n_trials``, ``timeout`` or a stop."""
        search, study = self.search, self.study
        batch = search._batch_size(self.n_splits)
        start = time.monotonic()
        n_asked = 0
        parallel = Parallel(n_jobs=search.n_jobs, return_as="generator")
        self.scheduler = FusedScheduler(
            search,
            self.X,
            self.y,
            fit_and_score_kwargs=self.kwargs,
            parallel=parallel,
            routing=_routing_enabled(),
        )
        study._stop_flag = False
        study._thread_local.in_optimize_loop = True  # study.stop() from callbacks
        try:
            with parallel:
                while not study._stop_flag:
                    if search.n_trials is not None and n_asked >= search.n_trials:
                        break
                    if search.timeout is not None:
                        if time.monotonic() - start >= search.timeout:
                            break
                    size = batch
                    if search.n_trials is not None:
                        size = min(size, search.n_trials - n_asked)
                    self._fail_stale_trials()
                    size = self._grid_left(size)
                    trials = [
                        study.ask(fixed_distributions=search.param_distributions)
                        for _ in range(size)
                    ]
                    n_asked += size
                    self._run_batch(trials)
        finally:
            study._thread_local.in_optimize_loop = False

    def _grid_left(self, size: int) -> int:
        """Cap a batch at the grid points a ``GridSampler`` has not handed out.

        Sequentially, ``GridSampler`` stops the study once its grid is covered; a
        batch larger than what is left would repeat grid points instead.
        """
        sampler = self.study.sampler
        if isinstance(sampler, optuna.samplers.GridSampler):
            try:
                left = len(sampler._get_unvisited_grid_ids(self.study))
            except AttributeError:  # pragma: no cover - another Optuna version
                return size
            return max(1, min(size, left))
        return size

    def _fail_stale_trials(self) -> None:
        """As ``study.optimize``: fail trials whose heartbeat stopped (RDB storage)."""
        try:
            from optuna.storages._heartbeat import is_heartbeat_enabled
        except ImportError:  # pragma: no cover - another Optuna version
            return
        if is_heartbeat_enabled(self.study._storage):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                optuna.storages.fail_stale_trials(self.study)

    def _run_batch(self, trials: list) -> None:
        """Train and tell one batch; an interruption fails its unfinished trials."""
        open_trials = {trial.number: trial for trial in trials}
        self._open = open_trials
        try:
            with ExitStack() as stack:
                for trial in trials:
                    stack.enter_context(_heartbeat(trial, self.study))
                self._evaluate(trials)
        except BaseException as exc:
            # As study.optimize: the interrupted trials end FAIL, without callbacks.
            for trial in list(open_trials.values()):
                self._tell(trial, state=TrialState.FAIL, reason=exc, callbacks=False)
            raise

    def _evaluate(self, trials: list) -> None:
        """Configure, train and tell ``trials``; errors go to their own trial."""
        configured, ready = {}, []
        for trial in trials:
            try:
                params = estimator_params(trial.params)
                configured[trial.number] = clone(self.search.estimator).set_params(
                    **params
                )
            except Exception as exc:
                self._fail(trial, exc)
                continue
            ready.append((trial, params))
        fused, per_fit = [], []
        for trial, params in ready:
            form = fused_form(
                configured[trial.number], self.search._mlp_device(), self.search.dtype
            )
            if self.epochs is not None and form is None:
                per_fit.append(trial)
            else:
                fused.append((trial, params))
        if fused:
            self._train_fused(fused)
        for trial in per_fit:
            self._partial_fit_trial(trial, configured[trial.number])

    def _train_fused(self, items: list) -> None:
        trials = [trial for trial, _ in items]
        policy = None
        pruning: list[_TrialPruning] = []
        if self.epochs is not None:

            def policy(keys):
                made = _TrialPruning(trials, keys, self.error_score)
                pruning.append(made)
                return made

        try:
            out = self.scheduler.evaluate(
                clone(self.search.estimator),
                [params for _, params in items],
                self.splits,
                [None] * (len(items) * self.n_splits),
                partial_fit_epochs=self.epochs,
                policy=policy,
            )
        except Exception as exc:
            if len(items) == 1:
                self._fail(items[0][0], exc)
                return
            # error_score="raise": find the failing trial by training them one by one.
            for item in items:
                self._train_fused([item])
            return
        pruned = set().union(*(p.pruned for p in pruning)) if pruning else set()
        for c, trial in enumerate(trials):
            outs = out[c * self.n_splits : (c + 1) * self.n_splits]
            self._finish(trial, outs, pruned=c in pruned)

    # -- recording ---------------------------------------------------------------------
    def _finish(self, trial, outs: list[dict], pruned: bool) -> None:
        """Record a trial's CV results as optuna_integration does; tell the study."""
        n = self.n_splits
        failed = [out["fit_error"] is not None for out in outs]
        if all(failed) and self.epochs is None:
            # cross_validate raises when every fit fails; optuna_integration then
            # records error_score for every split.
            error = self.error_score if self.error_score is not None else np.nan
            scores = {
                "fit_time": np.full(n, np.nan),
                "score_time": np.full(n, np.nan),
                "test_score": np.array([error] * n),
            }
        else:
            if self.epochs is None:
                _warn_or_raise_about_fit_failures(outs, self.error_score)
            scores = {
                "fit_time": np.array([out["fit_time"] for out in outs]),
                "score_time": np.array([out["score_time"] for out in outs]),
                "test_score": np.array([out["test_scores"] for out in outs]),
            }
            if self.search.return_train_score:
                scores["train_score"] = np.array([out["train_scores"] for out in outs])
        self._store(trial, scores, report=not pruned)
        if pruned:
            self._tell(trial, state=TrialState.PRUNED)
        else:
            self._tell(trial, value=trial.user_attrs["mean_test_score"])

    def _store(self, trial, scores: dict, report: bool) -> None:
        for name, array in scores.items():
            if name in ("test_score", "train_score"):
                for i, score in enumerate(array):
                    trial.set_user_attr(f"split{i}_{name}", score)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                trial.set_user_attr(f"mean_{name}", np.nanmean(array))
                trial.set_user_attr(f"std_{name}", np.nanstd(array))
        if report and len(scores["test_score"]) > 1:
            # What optuna.terminator.report_cross_validation_scores stores.
            try:
                from optuna.terminator.erroreval import _CROSS_VALIDATION_SCORES_KEY

                trial.storage.set_trial_system_attr(
                    trial._trial_id,
                    _CROSS_VALIDATION_SCORES_KEY,
                    [float(s) for s in scores["test_score"]],
                )
            except (ImportError, AttributeError, TypeError, ValueError):
                pass

    def _tell(
        self, trial, value=None, state=None, reason=None, callbacks: bool = True
    ) -> None:
        """Tell the study, log as ``study.optimize`` does, run the callbacks."""
        if self._open.pop(trial.number, None) is None:
            return
        if state is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                frozen = self.study.tell(trial, value)
        else:
            frozen = self.study.tell(trial, state=state)
        if frozen.state == TrialState.COMPLETE:
            log = getattr(self.study, "_log_completed_trial", None)
            if log is not None:
                log(frozen.values, frozen.number, frozen.params)
        elif frozen.state == TrialState.PRUNED:
            optuna.logging.get_logger("optuna").info(
                f"Trial {frozen.number} pruned. trial was pruned at iteration "
                f"{frozen.last_step}."
            )
        else:
            why = (
                f"the following error: {reason!r}"
                if reason is not None
                else f"the value {value!r}"
            )
            optuna.logging.get_logger("optuna").warning(
                f"Trial {frozen.number} failed with parameters: {frozen.params} "
                f"because of {why}."
            )
        for callback in self.search.callbacks or () if callbacks else ():
            callback(self.study, frozen)

    def _fail(self, trial, exc: BaseException) -> None:
        """End a trial whose objective raised: ``FAIL``; re-raise unless caught."""
        caught = isinstance(exc, self.catch)
        self._tell(trial, state=TrialState.FAIL, reason=exc, callbacks=caught)
        if not caught:
            raise exc

    # -- estimators without a fused form, with pruning ---------------------------------
    def _partial_fit_trial(self, trial, estimator) -> None:
        """optuna_integration's ``partial_fit`` loop, for one trial, per fit."""
        try:
            scores, pruned = self._partial_fit_cv(trial, estimator)
        except Exception as exc:
            self._fail(trial, exc)
            return
        self._store(trial, scores, report=not pruned)
        if pruned:
            self._tell(trial, state=TrialState.PRUNED)
        else:
            self._tell(trial, value=trial.user_attrs["mean_test_score"])

    def _partial_fit_cv(self, trial, estimator) -> tuple[dict, bool]:
        params = dict(self.fit_params)
        if is_classifier(estimator):
            classes = np.unique(self.y) if self.y is not None else np.array([None])
            params.setdefault("classes", classes)
        n = self.n_splits
        estimators = [clone(estimator) for _ in range(n)]
        scores = {
            "fit_time": np.zeros(n),
            "score_time": np.zeros(n),
            "test_score": np.empty(n),
        }
        if self.search.return_train_score:
            scores["train_score"] = np.empty(n)
        for step in range(self.search.max_iter):
            for i, (train, test) in enumerate(self.splits):
                out = self._partial_fit_and_score(estimators[i], train, test, params)
                if self.search.return_train_score:
                    scores["train_score"][i] = out.pop(0)
                scores["test_score"][i] = out[0]
                scores["fit_time"][i] += out[1]
                scores["score_time"][i] += out[2]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                trial.report(float(np.nanmean(scores["test_score"])), step=step)
            if trial.should_prune():
                return scores, True
        return scores, False

    def _partial_fit_and_score(self, estimator, train, test, params) -> list:
        X_train, y_train = _safe_split(estimator, self.X, self.y, train)
        X_test, y_test = _safe_split(estimator, self.X, self.y, test, train)
        start = time.time()
        try:
            estimator.partial_fit(X_train, y_train, **params)
        except Exception:
            if self.error_score == "raise":
                raise
            fit_time = time.time() - start
            test_score = train_score = self.error_score
            score_time = 0.0
        else:
            fit_time = time.time() - start
            test_score = self.search.scorer_(estimator, X_test, y_test)
            score_time = time.time() - fit_time - start
            if self.search.return_train_score:
                train_score = self.search.scorer_(estimator, X_train, y_train)
        out = [float(test_score), fit_time, score_time]
        if self.search.return_train_score:
            out.insert(0, float(train_score))
        return out


class _TrialPruning(EpochPolicy):
    """Report each trial's mean fold score per epoch to Optuna; stop pruned trials.

    One policy serves one engine call. A trial's epoch is reported (``step`` =
    epoch - 1, as optuna_integration counts) once every fold of the trial still
    training has finished that epoch, so folds split over packs are waited for; a
    fold that failed counts as ``error_score`` afterwards. When the pruner prunes
    the trial, its models still training stop at their next epoch end (at once
    for those that just reported).

    Parameters
    ----------
    trials : list of optuna.trial.Trial
        The batch's trials, by candidate index.
    keys : list of (candidate, fold)
        Per task of the engine call.
    error_score : numeric or 'raise'
        The search's ``error_score``.
    """

    needs_scores = True

    def __init__(self, trials: list, keys: list, error_score) -> None:
        self.trials = trials
        self.candidate = np.array([c for c, _ in keys], dtype=np.int64)
        self.training: dict[int, set] = defaultdict(set)
        for task, c in enumerate(self.candidate):
            self.training[int(c)].add(task)
        self.failed_at: dict[int, list[int]] = defaultdict(list)
        self.scores: dict[int, dict[int, dict[int, float]]] = defaultdict(dict)
        self.reported: dict[int, int] = defaultdict(int)
        self.pruned: set[int] = set()
        self.error_score = (
            float(error_score) if isinstance(error_score, numbers.Number) else None
        )

    def end_epoch(self, models, epochs, scores):
        """Record the epoch's scores, report complete epochs, stop pruned trials."""
        touched = set()
        for task, epoch, score in zip(models, epochs, scores, strict=True):
            c = int(self.candidate[task])
            touched.add(c)
            if c not in self.pruned:
                self.scores[c].setdefault(int(epoch), {})[int(task)] = float(score)
        for c in sorted(touched):
            self._report(c)
        return np.isin(self.candidate[models], list(self.pruned))

    def finished(self, task: int, result) -> None:
        """Forget a model that left its pack; report what it was waited for."""
        c = int(self.candidate[task])
        self.training[c].discard(task)
        if result.failure is not None:
            self.failed_at[c].append(int(result.n_iter))
        self._report(c)

    def _report(self, c: int) -> None:
        if c in self.pruned:
            return
        trial = self.trials[c]
        while True:
            epoch = self.reported[c] + 1
            got = self.scores[c].get(epoch)
            if got is None or not self.training[c] <= set(got):
                return
            values = list(got.values())
            if self.error_score is not None:
                values += [self.error_score for e in self.failed_at[c] if e < epoch]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = float(np.nanmean(values)) if values else math.nan
            del self.scores[c][epoch]
            self.reported[c] = epoch
            trial.report(mean, step=epoch - 1)
            if trial.should_prune():
                self.pruned.add(c)
                self.scores.pop(c, None)
                return


def _heartbeat(trial, study):
    """The heartbeat ``study.optimize`` keeps for a running trial (RDB storage)."""
    try:
        from optuna.storages._heartbeat import get_heartbeat_thread
    except ImportError:  # pragma: no cover
        return nullcontext()
    return get_heartbeat_thread(trial._trial_id, study._storage)
