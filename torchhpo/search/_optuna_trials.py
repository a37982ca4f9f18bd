"""The ask / train / tell loop of :class:`~torchhpo.search._optuna.OptunaSearchCV`.

:class:`BatchOptimizer` does what ``study.optimize`` does for optuna_integration's
search, a batch of trials at a time: ask the batch (``study.ask``, the trial's
parameters suggested at once), train every (trial, fold) model of it through the
:class:`~torchhpo.search._scheduler.FusedScheduler` (with pruning, as ``partial_fit``
epochs under a :class:`~torchhpo.search._optuna_pruning.TrialPruning` policy),
record each trial's CV results as optuna_integration does (user attributes), and
tell the study (``study.tell``), running the callbacks. Estimators the engine cannot
train run per fit; with pruning, through optuna_integration's own ``partial_fit``
loop, one trial at a time.

``study.optimize``'s private switches are honoured, so callbacks may call
``study.stop()`` and a ``GridSampler`` stops the search once its grid is covered.
"""

from __future__ import annotations

import numbers
import time
import warnings
from collections.abc import Iterable
from contextlib import ExitStack, nullcontext

import numpy as np
import optuna
from optuna.trial import TrialState
from sklearn.base import clone, is_classifier
from sklearn.utils.parallel import Parallel

from .._sklearn_compat import (
    _routing_enabled,
    _safe_split,
    _warn_or_raise_about_fit_failures,
)
from ._estimators import fused_form
from ._optuna_pruning import TrialPruning
from ._optuna_stream import stream_trials
from ._scheduler import FusedScheduler


class BatchOptimizer:
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
    n_done : int, default=0
        Trials of ``n_trials`` already finished in the study (a resumed
        ``checkpoint``).
    """

    def __init__(self, search, X, y, splits, fit_params, n_done: int = 0) -> None:
        self.search = search
        self.study = search.study_
        self.X, self.y, self.splits = X, y, splits
        self.fit_params = fit_params
        self.n_splits = len(splits)
        catch = search.catch
        self.catch = tuple(catch) if isinstance(catch, Iterable) else (catch,)
        self.error_score = search.error_score
        self.epochs = search.max_iter if search.enable_pruning else None
        self.trials_left = 0  # trials not asked yet (for the progress bar's total)
        self.n_done = n_done
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
        n_asked = self.n_done
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
            with parallel, self.scheduler:
                if stream_trials(self):
                    return
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
                    size = self._grid_left(self._startup_left(size))
                    size = self._brute_force_left(size)
                    trials = [self._ask() for _ in range(size)]
                    n_asked += size
                    if search.n_trials is not None:
                        self.trials_left = search.n_trials - n_asked
                    self._run_batch(trials)
        finally:
            study._thread_local.in_optimize_loop = False

    def _startup_left(self, size: int) -> int:
        """Cap a pruned search's batch at the trials its pruner waits for.

        ``MedianPruner`` / ``PercentilePruner`` prune nothing until
        ``n_startup_trials`` trials have completed, and a batch's trials are told
        only when it ends: asking just those first lets the pruner work from the
        same trial on as in a sequential search.
        """
        if self.epochs is None:
            return size
        n_startup = getattr(self.study.pruner, "_n_startup_trials", 0)
        if not isinstance(n_startup, int) or n_startup <= 0:
            return size
        done = len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        left = n_startup - done
        return min(size, left) if left > 0 else size

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

    def _brute_force_left(self, size: int) -> int:
        """Cap a batch at the points a ``BruteForceSampler`` has not handed out.

        Sequentially, ``BruteForceSampler`` stops the study once every point of
        the space has been tried (2 trials for an integer in ``[0, 1]``, not
        ``n_trials``); a bigger batch would repeat points instead. The space here
        is the fixed ``param_distributions``: its points are counted, less those
        of the study's trials over the same parameters.
        """
        if not isinstance(self.study.sampler, optuna.samplers.BruteForceSampler):
            return size
        space = self.search.param_distributions
        try:
            from optuna.samplers._brute_force import _enumerate_candidates

            n_points = int(
                np.prod([len(_enumerate_candidates(d)) for d in space.values()])
            )
        except Exception:  # another Optuna version, or a space it cannot enumerate
            return 1  # one trial at a time: study.optimize's own pace
        tried = {
            tuple(sorted(trial.params.items()))
            for trial in self.study.get_trials(deepcopy=False)
            if trial.state != TrialState.WAITING and set(trial.params) == set(space)
        }
        return max(1, min(size, n_points - len(tried)))

    def _ask(self) -> tuple:
        """Ask the study for a trial and suggest its parameters, as ``ask`` does.

        Returns ``(trial, error)``: an error raised while suggesting (a broken
        distribution) is the trial's own, as it is inside optuna_integration's
        objective, so ``catch`` decides whether it stops the search.
        """
        trial = self.study.ask()
        try:
            for name, distribution in self.search.param_distributions.items():
                trial._suggest(name, distribution)
        except Exception as exc:
            return trial, exc
        return trial, None

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

    def _run_batch(self, asked: list) -> None:
        """Train and tell one batch; an interruption fails its unfinished trials.

        ``asked`` holds ``(trial, error)`` pairs from :meth:`_ask`.
        """
        trials = [trial for trial, _ in asked]
        open_trials = {trial.number: trial for trial in trials}
        self._open = open_trials
        try:
            with ExitStack() as stack:
                for trial in trials:
                    stack.enter_context(_heartbeat(trial, self.study))
                self._evaluate(asked)
        except BaseException as exc:
            # As study.optimize: the interrupted trials end FAIL, without callbacks.
            for trial in list(open_trials.values()):
                self._tell(trial, state=TrialState.FAIL, reason=exc, callbacks=False)
            raise

    def _evaluate(self, asked: list) -> None:
        """Configure, train and tell the trials; errors go to their own trial."""
        configured, ready = {}, []
        for trial, error in asked:
            if error is not None:
                self._fail(trial, error)
                continue
            try:
                params = self.search._estimator_params(trial.params)
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
        pruning: list[TrialPruning] = []
        if self.epochs is not None:

            def policy(keys):
                made = TrialPruning(trials, keys, self.error_score)
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
                progress_left=(self.trials_left * self.n_splits, None),
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
        if report:
            _report_cross_validation_scores(trial, scores["test_score"])

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
        except Exception as exc:
            if self.error_score == "raise":
                raise
            if not isinstance(self.error_score, numbers.Number):
                raise ValueError("error_score must be 'raise' or numeric.") from exc
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


def _report_cross_validation_scores(trial, test_scores) -> None:
    """Store the scores Optuna's terminator reads, warning as optuna_integration does.

    What ``optuna.terminator.report_cross_validation_scores`` does (that function
    is deprecated in Optuna 5 and warns on every call): a single split cannot be
    reported, which optuna_integration turns into this ``UserWarning``.
    """
    from optuna.terminator.erroreval import _CROSS_VALIDATION_SCORES_KEY

    scores = [float(score) for score in test_scores]
    if len(scores) <= 1:
        warnings.warn(
            "Failed to report cross validation scores for TerminatorCallback, with "
            "error: The length of `scores` is expected to be greater than one.",
            UserWarning,
            stacklevel=2,
        )
        return
    trial.storage.set_trial_system_attr(
        trial._trial_id, _CROSS_VALIDATION_SCORES_KEY, scores
    )


def _heartbeat(trial, study):
    """The heartbeat ``study.optimize`` keeps for a running trial (RDB storage)."""
    try:
        from optuna.storages._heartbeat import get_heartbeat_thread
    except ImportError:  # pragma: no cover
        return nullcontext()
    return get_heartbeat_thread(trial._trial_id, study._storage)
