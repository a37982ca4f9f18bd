"""OptunaSearchCV: ``optuna_integration.OptunaSearchCV``, with trials trained in packs.

optuna_integration's search runs ``study.optimize``: one trial after another, each a
``cross_validate`` (or, with ``enable_pruning``, ``partial_fit`` one epoch at a time
on every fold, reporting the mean test score after each epoch). This one asks the
study for a **batch** of trials (``study.ask``), trains every (trial, fold) model of
the batch at once through the fused :class:`~torchhpo.search._scheduler.FusedScheduler`,
tells each trial's result (``study.tell``), and asks the next batch, so the study's
sampler learns from every finished batch.

With ``enable_pruning``, the models train as ``max_iter`` ``partial_fit`` epochs;
after each epoch the engine scores every model on its CV test fold, each trial's
mean over its folds is reported to the trial (``trial.report``) and the study's
pruner asked (``trial.should_prune``); a pruned trial's models leave their packs at
once, and the trial ends ``PRUNED``.

What is recorded per trial (user attributes, their order, the value, the state) is
what optuna_integration records, so ``cv_results_`` and ``trials_dataframe()`` have
its layout. The loop is :mod:`~torchhpo.search._optuna_trials`, the pruning policy
:mod:`~torchhpo.search._optuna_pruning`, the space checks and architecture forms
:mod:`~torchhpo.search._optuna_space`.
"""

from __future__ import annotations

import logging
import numbers
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.model_selection import check_cv
from sklearn.utils import check_random_state, get_tags
from sklearn.utils.validation import check_is_fitted

try:
    import optuna
    from optuna.study import StudyDirection
    from optuna.trial import FrozenTrial
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "torchhpo.OptunaSearchCV needs Optuna: pip install 'torchhpo[optuna]'."
    ) from exc

from .._device import resolve_device, resolve_devices
from .._sklearn_compat import (
    HasMethods,
    Interval,
    RealNotInt,
    StrOptions,
    _fit_context,
    _num_samples,
    _safe_indexing,
)
from ..engine.trainer import CPU_PACK_SIZE
from ._estimators import fused_form
from ._estimators import refit as refit_estimator
from ._options import TORCHHPO_OPTIONS, SearchOptions
from ._optuna_space import (
    check_deprecated_distributions,
    check_distributions,
    check_param_names,
    estimator_names,
    estimator_params,
)
from ._optuna_trials import BatchOptimizer

_logger = logging.getLogger(__name__)

#: Models a CUDA device trains per batch of trials (packs there hold thousands).
CUDA_MODELS_PER_BATCH = 512
#: Fewest trials per automatic batch: TPE's first 10 trials are random anyway.
MIN_TRIALS_PER_BATCH = 10
#: An automatic batch is at most this share of ``n_trials``, so the sampler
#: learns at least this many times over.
MIN_ROUNDS = 4


class OptunaSearchCV(SearchOptions, BaseEstimator):
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
        Log level of this search's messages (1: info, 2: debug). Optuna's own
        INFO lines (one per trial) are shown only with ``verbose >= 1``; at 0
        Optuna logs warnings only, for the duration of ``fit``.
    callbacks : list of callable, default=None
        Called as ``callback(study, frozen_trial)`` after each trial is told.
    catch : exception class or iterable of them, default=()
        Errors a trial may raise without stopping the search (the trial ends
        ``FAIL``).
    device, dtype, progress, max_pack_size, backend :
        torchhpo options, as in :class:`~torchhpo.GridSearchCV` (pruning needs
        ``backend="local"``). Fit times are each model's share of its pack's
        time, as there.
    checkpoint : str or path-like, default=None
        A file in which the search's study records every trial as it ends
        (Optuna's ``JournalStorage``; not with ``study``). A killed search
        fitted again with the same ``checkpoint`` continues its study: trials
        that finished are kept, trials the kill interrupted are marked ``FAIL``,
        and only the trials missing from ``n_trials`` run. The sampler continues
        from the recorded trials, so the trials after the resume differ from
        those an uninterrupted run would have asked (same in distribution).
    trials_per_batch : int or None, default=None
        Trials asked from the study at once. None chooses from the device: on a
        CPU, enough trials to fill one pack of ``CPU_PACK_SIZE`` models per
        worker thread; on CUDA, ``CUDA_MODELS_PER_BATCH`` models per device; in
        both cases at least 10 trials and at most a quarter of ``n_trials``.
        With pruning, a first batch is capped at the trials the pruner waits for
        before it prunes (``MedianPruner``'s ``n_startup_trials``).
    param_names : dict of str to str, default=None
        The estimator parameter a searched parameter sets, where the two names
        differ. With ``{"alpha": "mlp__alpha"}`` and a space keyed ``alpha``, the
        study (``trial.params``, its distributions, ``best_params_``, Optuna's
        plots and dashboard) says ``alpha`` while the Pipeline's ``mlp__alpha`` is
        set. Keys must be keys of ``param_distributions``; other names are the
        estimator's own (so are those of trials a study recorded before its
        parameters were renamed, which ``refit`` still reads).

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

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"])],
        "param_distributions": [Mapping],
        "cv": ["cv_object"],
        "enable_pruning": ["boolean"],
        # As optuna_integration: a bad error_score is an error only when a fit fails.
        "error_score": "no_validation",
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "n_jobs": [numbers.Integral, None],
        "n_trials": [Interval(numbers.Integral, 0, None, closed="left"), None],
        "random_state": ["random_state"],
        "refit": ["boolean"],
        "return_train_score": ["boolean"],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "study": [optuna.study.Study, None],
        "subsample": [
            Interval(RealNotInt, 0, 1, closed="right"),
            Interval(numbers.Integral, 1, None, closed="left"),
        ],
        "timeout": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "verbose": ["verbose"],
        "callbacks": [list, tuple, None],
        "catch": [type, Iterable],
        **TORCHHPO_OPTIONS,
        "trials_per_batch": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "param_names": [Mapping, None],
    }

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
        param_names: Mapping[str, str] | None = None,
    ):
        # As optuna_integration: deprecated distributions would break clone.
        check_deprecated_distributions(param_distributions)
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
        self.param_names = param_names

    # -- the attributes optuna_integration derives from the study ---------------------
    @property
    def _estimator_type(self) -> str | None:
        """The estimator's type (``"classifier"``, ...), as optuna_integration's."""
        return get_tags(self.estimator).estimator_type

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

    def _estimator_params(self, trial_params: Mapping) -> dict:
        """A trial's parameters as the estimator takes them (names and values)."""
        return estimator_params(trial_params, self.param_names)

    # -- checks ------------------------------------------------------------------------
    def _check_params(self) -> None:
        """Check what ``_parameter_constraints`` cannot declare.

        The search space, combinations of options, the study's direction and
        whether ``device`` names a usable device.
        """
        names = check_param_names(self.param_names, self.param_distributions)
        check_distributions(estimator_names(self.param_distributions, names))
        if self.enable_pruning and not (
            hasattr(self.estimator, "partial_fit") or _mlp_pipeline(self.estimator)
        ):
            raise ValueError("estimator must support partial_fit.")
        if self.study is not None and self.study.direction != StudyDirection.MAXIMIZE:
            raise ValueError("direction of study must be 'maximize'.")
        if self.checkpoint is not None and self.study is not None:
            raise ValueError(
                f"OptunaSearchCV takes checkpoint={self.checkpoint!r} or a study, not "
                "both: the checkpoint is the storage of the study it creates. Give "
                "the study its own storage (e.g. storage='sqlite:///search.db', "
                "load_if_exists=True) to continue it instead."
            )
        self._check_torchhpo_options()

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
    @_fit_context(
        # OptunaSearchCV.estimator is not validated yet
        prefer_skip_nested_validation=False
    )
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
        # Optuna's own INFO line per trial (and per new study) only with verbose.
        old_optuna_level = optuna.logging.get_verbosity()
        if self.verbose < 1:
            optuna.logging.set_verbosity(max(old_optuna_level, logging.WARNING))
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
            self._warn_about_epoch_scores()
            n_done = 0
            if self.study is None:
                seed = random_state.randint(0, np.iinfo("int32").max)
                sampler = optuna.samplers.TPESampler(seed=seed)
                self.study_ = optuna.create_study(
                    direction="maximize",
                    sampler=sampler,
                    **_checkpoint_study(self.checkpoint),
                )
                if self.checkpoint is not None:
                    n_done = _resume_trials(self.study_)
            else:
                self.study_ = self.study
            splits = list(cv.split(X_res, y_res, groups_res))
            _logger.info(
                "Searching the best hyperparameters using "
                f"{_num_samples(self.sample_indices_)} samples..."
            )
            BatchOptimizer(self, X_res, y_res, splits, fit_params_res, n_done).run()
            _logger.info("Finished hyperparameter search!")
            if self.refit:
                self._refit(X, y, **fit_params)
        finally:
            _logger.setLevel(old_level)
            optuna.logging.set_verbosity(old_optuna_level)
        return self

    def _warn_about_epoch_scores(self) -> None:
        """Say so when pruning reports another metric than ``scoring``."""
        default = "accuracy" if is_classifier(self.estimator) else "r2"
        if not self.enable_pruning or self.scoring in (None, default):
            return
        if fused_form(clone(self.estimator)) is None:
            return  # trained per fit: optuna_integration's loop, with the scorer
        warnings.warn(
            f"With enable_pruning=True, the per-epoch values reported to Optuna are "
            f"the estimator's own score ({default}), not scoring={self.scoring!r}; "
            "each trial's final value uses scoring.",
            UserWarning,
            stacklevel=3,
        )

    def _refit(self, X, y=None, **fit_params) -> OptunaSearchCV:
        """Fit the best parameters on the whole data as ``best_estimator_``."""
        best = clone(self.estimator)
        try:
            best.set_params(**self._estimator_params(self.study_.best_params))
        except ValueError as e:
            _logger.exception(e)
        _logger.info(f"Refitting the estimator using {_num_samples(X)} samples...")
        start = time.time()
        if fused_form(best) is None:
            # As optuna_integration: y is passed even when it is None.
            best.fit(X, y, **fit_params)
            self.best_estimator_ = best
        else:
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


#: The study name of a ``checkpoint`` journal.
CHECKPOINT_STUDY = "torchhpo"


def _checkpoint_study(checkpoint) -> dict:
    """``create_study`` arguments storing the study in ``checkpoint`` (if any)."""
    if checkpoint is None:
        return {}
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(os.fspath(checkpoint)))
    return {"storage": storage, "study_name": CHECKPOINT_STUDY, "load_if_exists": True}


def _resume_trials(study) -> int:
    """Fail the trials a kill left running; return the trials that finished."""
    done = 0
    for trial in study.get_trials(deepcopy=False):
        if trial.state == optuna.trial.TrialState.RUNNING:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        else:
            done += 1
    return done
