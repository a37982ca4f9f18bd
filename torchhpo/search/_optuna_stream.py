"""OptunaSearchCV's trials as a stream: asked as slots free, told as they end.

A batch of trials ends when its slowest trial does, so pruned trials leave their
slots empty until then, and the sampler learns only between batches. Here the
search is one engine call fed by a :class:`TrialStream`: whenever a pack has a
trial's worth of free slots (its CV folds), the stream asks the study for a new
trial (``study.ask``) and hands over its fold models; when a trial's last fold
ends it is scored and told (``study.tell``) at once, so later trials are sampled
from every finished one, as in Optuna's own parallel optimisation (several
workers, each asking when free).

It serves estimators that train on the search's data as it is (an MLP, not a
Pipeline) on the local backend. A trial the engine cannot train in the stream
(parameters its MLP refuses, a loss or device other than the first trial's)
runs through the batch path on its own, so its errors are the batch path's.
"""

from __future__ import annotations

import time
from collections import defaultdict

import optuna
from optuna.trial import TrialState
from sklearn.base import clone

from ..engine import DeviceData, train_models
from ..engine.feed import TaskFeed
from ..neural_network._base import _STOCHASTIC_SOLVERS
from ._optuna_pruning import TrialPruning
from ._scheduler import _check_candidate, _Model, _prepare


class _NoContexts:
    """scikit-learn callback contexts: none for any fit."""

    def __getitem__(self, index: int) -> None:
        return None


def streamable(search) -> bool:
    """Whether a search's trials can stream through one engine call."""
    from ._estimators import fused_form

    if search.backend != "local" or search.trials_per_batch is not None:
        return False
    sampler = search.study_.sampler
    exhaustible = (optuna.samplers.GridSampler, optuna.samplers.BruteForceSampler)
    if isinstance(sampler, exhaustible):
        return False  # they end the study once covered: batches stop exactly there
    try:
        from optuna.storages._heartbeat import is_heartbeat_enabled

        if is_heartbeat_enabled(search.study_._storage):
            return False
    except ImportError:  # pragma: no cover - another Optuna version
        pass
    form = fused_form(clone(search.estimator), search._mlp_device(), search.dtype)
    return form is not None and not form.prefix


class TrialStream(TaskFeed):
    """Ask trials as slots free; score and tell each as its last fold ends.

    Parameters
    ----------
    runner : BatchOptimizer
        The search's ask / train / tell loop (its study, scheduler and telling).
    views : Views
        The search data's views.
    view : View
        The whole data's view, which every streamed trial trains on.
    data_key : tuple
        The first trial's :meth:`_Model.data_key`: streamed trials share it.
    """

    def __init__(self, runner, views, view, data_key) -> None:
        self.runner = runner
        self.study = runner.study
        self.search = runner.search
        self.views, self.view, self.data_key = views, view, data_key
        self.start = time.monotonic()
        self.n_asked = runner.n_done  # trials a checkpoint resumed
        self.trials: list = []  # by candidate
        self.params: list[dict] = []  # by candidate
        self.models: list[list[_Model]] = []  # by candidate
        self.tasks: list[list] = []  # by candidate
        self.by_index: list[_Model] = []  # by engine task index
        self.left: dict[int, int] = {}  # candidate -> folds still training
        self.pending: dict[tuple, list[int]] = defaultdict(list)  # shape -> cands
        self.policy: TrialPruning | None = None
        if runner.epochs is not None:
            self.policy = TrialPruning([], [], runner.error_score)
            n_startup = getattr(self.study.pruner, "_n_startup_trials", 0)
            if isinstance(n_startup, int) and n_startup > 0:
                self.startup_units = n_startup
        self.bar = None
        self.deferred: list = []  # (trial, error) pairs for the batch path

    # -- asking ------------------------------------------------------------------
    def _can_ask(self) -> bool:
        search = self.search
        if self.study._stop_flag:
            return False
        if search.n_trials is not None and self.n_asked >= search.n_trials:
            return False
        timeout = search.timeout
        return timeout is None or time.monotonic() - self.start < timeout

    def _n_complete(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def _waiting_for_startup(self) -> bool:
        """Whether the pruner still waits for its first trials to complete.

        ``MedianPruner`` and ``PercentilePruner`` prune nothing until
        ``n_startup_trials`` trials have completed: trials started before then
        run to the end whatever they score. So until then, only that many
        trials run at once (as a sequential search would have them).
        """
        if self.startup_units is None:
            return False
        done = self._n_complete()
        running = sum(1 for left in self.left.values() if left > 0)
        return done < self.startup_units and running >= self.startup_units - done

    def starting(self) -> bool:
        """Whether fewer than the pruner's ``n_startup_trials`` have completed."""
        return (
            self.startup_units is not None and self._n_complete() < self.startup_units
        )

    def exhausted(self) -> bool:
        """No trial left to ask and none asked but waiting for slots."""
        return not self._can_ask() and not any(self.pending.values())

    def more(self, shape_key, free):
        """Hand over a whole trial's folds of ``shape_key``, if one fits now."""
        for key, waiting in self.pending.items():
            if waiting and (shape_key is None or key == shape_key):
                if len(self.models[waiting[0]]) <= free:
                    return self._hand_over(waiting.pop(0))
                return []
        # At most as many trials asked and not started as there are workers'
        # worth of shapes: a trial of another shape waits for its own pack.
        if free < self.runner.n_splits or not self._can_ask():
            return []  # a trial's folds enter together
        if self._waiting_for_startup():
            return []
        if sum(map(len, self.pending.values())) >= 2:
            return []
        c = self._ask()
        if c is None:
            return []
        key = self.pack_key(self.models[c][0].mlp._hyperparams())
        if (shape_key is None or key == shape_key) and len(self.models[c]) <= free:
            return self._hand_over(c)
        self.pending[key].append(c)
        return []

    def _ask(self) -> int | None:
        """Ask a trial and prepare its fold models; None if it cannot stream."""
        runner, search = self.runner, self.search
        runner._fail_stale_trials()
        trial, error = runner._ask()
        self.n_asked += 1
        if search.n_trials is None and self.bar is not None:
            self.bar.grow(runner.n_splits, runner.n_splits * self.budget)
        runner._open[trial.number] = trial
        c = len(self.trials)
        prepared = None if error is not None else self._prepare(trial, c)
        if prepared is None:
            # Parameters the engine cannot stream: the batch path decides, once
            # the stream has ended (not from inside the engine's call).
            self.deferred.append((trial, error))
            return None
        models, tasks = prepared
        self.trials.append(trial)
        self.params.append(self.search._estimator_params(trial.params))
        self.models.append(models)
        self.tasks.append(tasks)
        self.left[c] = len(models)
        return c

    def _prepare(self, trial, c: int) -> tuple[list[_Model], list] | None:
        """Candidate ``c``'s fold models and engine tasks; None: not streamable."""
        runner = self.runner
        scheduler = runner.scheduler
        try:
            params = self.search._estimator_params(trial.params)
            configured = clone(self.search.estimator).set_params(**params)
        except Exception:
            return None
        form = scheduler._form(configured)
        if form is None or form.prefix or _check_candidate(form) is not None:
            return None
        if form.mlp.solver not in _STOCHASTIC_SOLVERS:
            return None  # lbfgs trains alone
        models, tasks = [], []
        prototype = clone(form.mlp)
        for s, (train, test) in enumerate(runner.splits):
            if self.views.get(form, s) is not self.view:
                return None
            model = _Model(c * runner.n_splits + s, form, view=self.view)
            try:
                _prepare(model, prototype)
                if model.data_key() != self.data_key:
                    return None
                task = scheduler._task(
                    model, self.view.Y, train, test, 0, runner.n_splits
                )
            except Exception:
                return None
            models.append(model)
            tasks.append(task)
        return models, tasks

    def _hand_over(self, c: int) -> list:
        """The engine tasks of candidate ``c``'s folds, numbered from here on."""
        tasks = self.tasks[c]
        self.by_index.extend(self.models[c])
        if self.policy is not None:
            self.policy.extend(self.trials[c], len(tasks))
        return tasks

    # -- telling -------------------------------------------------------------------
    def on_result(self, index: int, result) -> None:
        """Note a model's result; score and tell its trial once all folds ended."""
        model = self.by_index[index]
        model.result = result
        if self.policy is not None:
            self.policy.finished(index, result)
        if self.bar is not None:
            self.bar.result(result)
            self.bar.fits_done(1)
        c = model.index // self.runner.n_splits
        self.left[c] -= 1
        if self.left[c] == 0:
            self._finish(c)

    def _finish(self, c: int) -> None:
        runner = self.runner
        models = self.models[c]
        runner.scheduler.convergence.collect(
            lambda: runner.scheduler._apply(models), len(models)
        )
        scored = runner.scheduler.score(
            models, self.params, runner.splits, _NoContexts()
        )
        outs = [scored[m.index] for m in models]
        pruned = self.policy is not None and c in self.policy.pruned
        runner._finish(self.trials[c], outs, pruned=pruned)

    # -- the loop ------------------------------------------------------------------
    def run(self, data: DeviceData) -> None:
        """Train every trial the study hands out, until a stop."""
        search, runner = self.search, self.runner
        n_splits = runner.n_splits
        self.budget = runner.epochs or _budget_of(search.estimator)
        n_trials = search.n_trials
        # Without n_trials (a timeout), each asked trial adds its share.
        n_fits = 0 if n_trials is None else n_trials * n_splits
        with runner.scheduler.progress.stage(n_fits * self.budget, n_fits) as bar:
            self.bar = bar
            train_models(
                data,
                [],
                feed=self,
                max_pack_size=search.max_pack_size,
                devices=search._engine_devices(),
                on_result=self.on_result,
                on_epochs=bar.epochs,
                policy=self.policy,
            )


def _budget_of(estimator) -> int:
    max_iter = getattr(estimator, "max_iter", 1)
    return max_iter if isinstance(max_iter, int) and max_iter > 0 else 1


def stream_trials(runner) -> bool:
    """Run ``runner``'s search as a stream if it can; False if it cannot."""
    from ._views import Views

    search = runner.search
    if not streamable(search):
        return False
    views = Views(
        runner.X,
        runner.y,
        runner.splits,
        runner.fit_params,
        partial_fit=runner.epochs is not None,
    )
    form = runner.scheduler._form(clone(search.estimator))
    view = views.get(form, 0) if form is not None else None
    if view is None or isinstance(view, BaseException):
        return False
    probe = _Model(0, form, view=view)
    try:
        _prepare(probe, clone(form.mlp))
        data_key = probe.data_key()
    except Exception:
        return False
    device, dtype, loss, kind = data_key[:4]
    data = DeviceData.from_numpy(
        view.X,
        view.Y,
        target_kind=kind,
        loss=loss,
        sample_weight=view.sample_weight,
        device=device,
        dtype=dtype,
    )
    stream = TrialStream(runner, views, view, data_key)
    runner._open = {}
    runner.scheduler.partial_fit_epochs = runner.epochs
    try:
        stream.run(data)
        if stream.deferred:
            runner.scheduler.partial_fit_epochs = None
            runner._evaluate(stream.deferred)
    except BaseException as exc:
        # As study.optimize: the interrupted trials end FAIL, without callbacks.
        for trial in list(runner._open.values()):
            runner._tell(
                trial, state=optuna.trial.TrialState.FAIL, reason=exc, callbacks=False
            )
        raise
    return True
