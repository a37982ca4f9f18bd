"""The fold-aware scheduler: a search's (candidate, fold) models, trained fused.

``evaluate`` is what scikit-learn's ``evaluate_candidates`` does with
``Parallel(_fit_and_score(...))``, with the training replaced:

1. configure every candidate (``clone(estimator).set_params(**params)``), so an
   unknown parameter name fails before any training, and check each fusable
   candidate's parameter values (an invalid one fails that candidate's fits); an
   estimator no parameter can make fusable is configured by each fit alone, as in
   scikit-learn (its ``set_params`` is called once per fit);
2. for every (candidate, fold) of a fusable candidate, describe its MLP's training
   as an engine task over a :mod:`view <torchhpo.search._views>` of the data (the
   whole ``X``, rows = the fold's training indices, or a Pipeline's per-fold output);
3. hand all tasks sharing a device, dtype and data shape to one
   :func:`~torchhpo.engine.train_models` call, over one
   :class:`~torchhpo.engine.DeviceData` (the data goes to the device once), which
   packs models of equal shapes and trains them together (on the search's
   ``device`` list or ``backend``); with a ``checkpoint``, models the journal
   (:mod:`~torchhpo.search._checkpoint`) holds are not trained again, and each
   trained one is journaled as it finishes;
4. store each result on its estimator (``_apply_result``), then score the models
   in batches on their device where the scorers are built-in ones
   (:mod:`~torchhpo.search._device_scoring`), the others through scikit-learn's
   ``_fit_and_score`` (:mod:`~torchhpo.search._replay`).

With ``partial_fit_epochs`` (Optuna's pruning), each fused model is trained as that
many ``partial_fit`` epochs instead of a ``fit``, its CV test fold is scored after
every epoch, its candidate's folds are kept in one pack, and an
:class:`~torchhpo.engine.policy.EpochPolicy` made per engine call may stop models.

Candidates of other estimators, and folds a view cannot serve, run per fit through
scikit-learn's ``_fit_and_score`` itself. Results come back in scikit-learn's order.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace
from itertools import product

import numpy as np
from sklearn.base import clone
from sklearn.utils.parallel import delayed

from .._device import resolve_device, resolve_dtype
from .._sklearn_compat import _fit_and_score
from ..engine import DeviceData, ModelResult, ModelTask, train_models
from ..engine.policy import EpochPolicy
from ..neural_network import BaseMLP
from ..neural_network._base import _STOCHASTIC_SOLVERS
from ._checkpoint import Journal, model_key
from ._continuations import Continuations
from ._device_scoring import score_models
from ._estimators import FusedForm, fused_form, may_fuse
from ._progress import SearchProgress, halving_left
from ._replay import replay_fit_and_score
from ._views import View, Views
from ._warnings import ConvergenceNotes

#: Makes the epoch policy of one engine call from its tasks' (candidate, fold).
PolicyFactory = Callable[[list[tuple[int, int]]], EpochPolicy]


@dataclass
class _Model:
    """One (candidate, fold) model of a fusable candidate."""

    index: int  # position in the (candidate, fold) product order
    form: FusedForm
    view: View | None = None
    mlp: BaseMLP | None = None
    result: ModelResult | None = None
    error: BaseException | None = None
    fitted: object = None
    slot: tuple[int, int] | None = None  # (candidate, fold) in the journal
    key: str | None = None  # digest of its parameters and fold, for the journal
    continuation: str | None = None  # its key in the scheduler's Continuations

    def data_key(self) -> tuple:
        """Models with equal keys train over one DeviceData."""
        mlp = self.mlp
        return (
            resolve_device(mlp.device),
            resolve_dtype(mlp.dtype),
            mlp.loss,
            mlp._target_kind(),
            self.view.X.shape[1],
            self.view.n_outputs,
        )

    @property
    def budget(self) -> int:
        """Its share of the progress bar: the epochs it may train (``max_iter``)."""
        return _budget(self.form.mlp)

    @property
    def fit_time(self) -> float:
        if self.result is None:
            return 0.0
        return self.result.fit_time + self.view.prefix_time / max(self.view.n_models, 1)


def _budget(estimator) -> int:
    """Return an estimator's ``max_iter`` (a Pipeline's last step's), else 1."""
    if hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    max_iter = getattr(estimator, "max_iter", 1)
    return max_iter if isinstance(max_iter, int) and max_iter > 0 else 1


def _check_candidate(form: FusedForm) -> BaseException | None:
    """Return what the candidate's MLP ``fit`` raises for its parameters, if any."""
    mlp = form.mlp
    try:
        mlp._validate_params()
        mlp._hidden_layer_sizes()
        resolve_device(mlp.device)
        mlp._check_training_dtype()
    except Exception as exc:
        return exc
    return None


def _prepare(model: _Model, prototype: BaseMLP) -> None:
    """Give the model its MLP, with the attributes its own ``fit`` sets first.

    ``prototype`` is an unfitted clone of the candidate's MLP, made once per
    candidate: a shallow copy of it per model costs microseconds where a
    ``clone`` costs ~0.2 ms (a second at 5,000 models).
    """
    view = model.view
    mlp = copy.copy(prototype)
    vars(mlp).update(view.attrs)
    hidden = mlp._hidden_layer_sizes()
    mlp._initialize(view.n_outputs, [view.X.shape[1], *hidden, view.n_outputs])
    mlp.n_outputs_ = view.n_outputs
    model.mlp = mlp


class FusedScheduler:
    """Evaluate candidates for one search ``fit``; a context manager around it.

    Leaving the context ends the search's progress bar and emits its
    ConvergenceWarnings (once per message, for all its evaluations).

    Parameters
    ----------
    search : BaseSearchCV
        The search (its ``device``, ``dtype``, ``progress``, ``max_pack_size``).
    X, y : array-like
        The search's data (after ``indexable``).
    fit_and_score_kwargs : dict
        The arguments scikit-learn passes to every ``_fit_and_score`` call.
    parallel : joblib.Parallel
        Runs per-fit evaluations (``return_as="generator"``).
    routing : bool
        Whether metadata routing is enabled.
    journal : Journal, optional
        The checkpoint journal: fused models it holds are not trained again, and
        each newly trained one is appended as it finishes.
    continuations : Continuations, optional
        Halving on ``max_iter``: models of earlier iterations that a model
        continues (from their resume state) instead of being trained again.
    """

    def __init__(
        self,
        search,
        X,
        y,
        *,
        fit_and_score_kwargs,
        parallel,
        routing,
        journal: Journal | None = None,
        continuations: Continuations | None = None,
    ):
        self.search = search
        self.X, self.y = X, y
        self.kwargs = fit_and_score_kwargs
        self.parallel = parallel
        self.routing = routing
        self.error_score = fit_and_score_kwargs["error_score"]
        self.journal = journal
        self.continuations = continuations
        self.n_evaluated = 0  # candidates of earlier evaluate calls (journal index)
        self.partial_fit_epochs: int | None = None
        self.policy: PolicyFactory | None = None
        #: The search's one bar, over every ``evaluate`` call.
        self.progress = SearchProgress(search.progress, type(search).__name__)
        #: ConvergenceWarnings of every ``evaluate`` call, emitted once at the end;
        #: halving on ``max_iter`` stops earlier iterations at max_iter by design.
        self.convergence = ConvergenceNotes(last_only=continuations is not None)

    def __enter__(self) -> FusedScheduler:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        """End the search: close its bar, then warn once per convergence message."""
        self.progress.close(complete=exc_type is None)
        if exc_type is None:
            self.convergence.emit()

    # -- planning -----------------------------------------------------------------
    def _form(self, estimator) -> FusedForm | None:
        form = fused_form(estimator, self.search._mlp_device(), self.search.dtype)
        fit_params = self.kwargs["fit_params"]
        if form is not None and form.fit_params_supported(fit_params, self.routing):
            return form
        return None

    def _failed(self, model: _Model, error: BaseException) -> _Model:
        if self.error_score == "raise":
            raise error
        model.error = error
        return model

    def _plan(self, configured, splits) -> tuple[list[_Model], list[int]]:
        """Split the (candidate, fold) pairs into fused models and per-fit indices."""
        forms = [self._form(est) for est in configured]
        checks = {
            c: _check_candidate(form)
            for c, form in enumerate(forms)
            if form is not None
        }
        views = Views(
            self.X,
            self.y,
            splits,
            self.kwargs["fit_params"],
            partial_fit=self.partial_fit_epochs is not None,
        )
        fused, per_fit = [], []
        prototypes: dict[int, BaseMLP] = {}  # per candidate
        pairs = product(range(len(configured)), range(len(splits)))
        for index, (c, s) in enumerate(pairs):
            form = forms[c]
            if form is None:
                per_fit.append(index)
                continue
            model = _Model(index, form)
            if checks[c] is not None:
                fused.append(self._failed(model, checks[c]))
                continue
            view = views.get(form, s)
            if view is None:
                per_fit.append(index)
                continue
            if isinstance(view, BaseException):
                fused.append(self._failed(model, view))
                continue
            model.view = view
            try:
                if c not in prototypes:
                    prototypes[c] = clone(form.mlp)
                _prepare(model, prototypes[c])
            except Exception as exc:
                fused.append(self._failed(model, exc))
                continue
            view.n_models += 1
            fused.append(model)
        return fused, per_fit

    # -- training -----------------------------------------------------------------
    def _budget(self, model: _Model) -> int:
        """A model's share of the bar: its ``max_iter``, or its partial_fit epochs."""
        return self.partial_fit_epochs or model.budget

    def _resume(self, models: list[_Model], bar) -> list[_Model]:
        """Give models the results the journal holds; return the others."""
        if self.journal is None:
            return models
        left = []
        for model in models:
            if model.error is None:
                model.result = self.journal.get(*model.slot, model.key)
                if model.result is not None:
                    bar.result(model.result)
                    bar.fits_done(1, self._budget(model))
                    continue
            left.append(model)
        return left

    def _on_result(self, trained: list[_Model], bar):
        """Return the engine's ``on_result`` callback: the journal and the bar."""

        def append(index: int, result: ModelResult) -> None:
            if self.journal is not None:
                model = trained[index]
                self.journal.append(*model.slot, model.key, result)
            bar.result(result)

        return append

    def _train(self, models: list[_Model], splits, bar) -> None:
        """Train every prepared model, one engine call per data key."""
        pending = self._resume(models, bar)
        groups: dict[tuple, list[_Model]] = {}
        for model in pending:
            if model.error is None:
                groups.setdefault(model.data_key(), []).append(model)
        failed = [model for model in pending if model.error is not None]
        bar.fits_done(len(failed), sum(self._budget(model) for model in failed))
        for (device, dtype, loss, kind, _, _), members in groups.items():
            views, offsets, total = [], {}, 0
            for model in members:
                if id(model.view) not in offsets:
                    offsets[id(model.view)] = total
                    total += len(model.view.X)
                    views.append(model.view)
            X, Y, sw = _stack(views)
            tasks, trained = [], []
            for model in members:
                train, test = splits[model.index % len(splits)]
                offset = offsets[id(model.view)]
                try:
                    task = self._task(model, Y, train, test, offset, len(splits))
                except Exception as exc:
                    self._failed(model, exc)
                    continue
                if self.continuations is not None:
                    task = self.continuations.task(model.continuation, task)
                    if task is None:  # final at an earlier iteration
                        model.result = self.continuations.final(model.continuation)
                        continue
                tasks.append(task)
                trained.append(model)
            # Failed before training, or final at an earlier halving iteration.
            untrained = [
                m for m in members if m.error is not None or m.result is not None
            ]
            bar.fits_done(len(untrained), sum(self._budget(m) for m in untrained))
            if not tasks:
                continue
            data = DeviceData.from_numpy(
                X,
                Y,
                target_kind=kind,
                loss=loss,
                sample_weight=sw,
                device=device,
                dtype=dtype,
            )
            policy = None
            if self.policy is not None:
                policy = self.policy([divmod(m.index, len(splits)) for m in trained])
            results = train_models(
                data,
                tasks,
                max_pack_size=self.search.max_pack_size,
                devices=self.search._engine_devices(),
                backend=self.search.backend,
                on_finished=bar.models_finished,
                on_result=_chain(
                    self._on_result(trained, bar), getattr(policy, "finished", None)
                ),
                on_epochs=bar.epochs,
                policy=policy,
            )
            for model, result in zip(trained, results, strict=True):
                model.result = result
        if self.continuations is not None:
            for model in models:
                if model.result is not None and model.continuation is not None:
                    self.continuations.store(
                        model.continuation, model.mlp._hyperparams(), model.result
                    )

    def _task(self, model: _Model, Y, train, test, offset, n_splits) -> ModelTask:
        """Describe a model's training: a ``fit``, or ``partial_fit`` epochs."""
        rows = model.view.rows(train) + offset
        if self.partial_fit_epochs is None:
            return model.mlp._build_task(Y, rows)
        solver = model.mlp.solver
        if solver not in _STOCHASTIC_SOLVERS:  # what MLP.partial_fit raises
            raise AttributeError(
                "partial_fit is only available for stochastic optimizers. "
                f"{solver} is not stochastic."
            )
        task = model.mlp._build_task(Y, rows, incremental=True)
        score_rows = model.view.test_rows(test)
        if score_rows is not None:
            score_rows = score_rows + offset
        return replace(
            task,
            incremental_epochs=self.partial_fit_epochs,
            score_index=score_rows,
            group=model.index // n_splits,
        )

    def _apply(self, models: list[_Model]) -> None:
        """Store results as fitted attributes; training failures become errors."""
        for model in models:
            if model.error is not None:
                continue
            try:
                # Weights in the validated X's dtype, as the estimator's own fit.
                model.mlp._apply_result(model.result, dtype=model.view.X.dtype)
            except Exception as exc:
                model.error = exc
            else:
                model.fitted = model.form.assemble(model.mlp, model.view.prefix)

    def score(
        self, fused: list[_Model], candidate_params, splits, contexts
    ) -> dict[int, dict]:
        """Return ``_fit_and_score`` results of trained fused models, by index.

        Built-in scorers run in batches on the models' device; the others, and
        failed models, go through scikit-learn's ``_fit_and_score``.
        """
        n_splits, n_candidates = len(splits), len(candidate_params)
        scored = score_models(
            fused, splits, self.X, self.y, self.kwargs, contexts, self.routing
        )
        results = {}
        for model in fused:
            i = model.index
            if i in scored:
                results[i] = scored[i]
                continue
            c, s = divmod(i, n_splits)
            results[i] = replay_fit_and_score(
                model.fitted if model.error is None else model.form.estimator,
                self.X,
                self.y,
                train=splits[s][0],
                test=splits[s][1],
                parameters=candidate_params[c],
                fit_time=model.fit_time,
                error=model.error,
                split_progress=(s, n_splits),
                candidate_progress=(c, n_candidates),
                caller=self.search,
                callback_ctx=contexts[i],
                **self.kwargs,
            )
        return results

    # -- the whole evaluation -----------------------------------------------------
    def evaluate(
        self,
        base_estimator,
        candidate_params,
        splits,
        contexts,
        *,
        partial_fit_epochs: int | None = None,
        policy: PolicyFactory | None = None,
        progress_left: tuple[int, int | None] | None = None,
    ) -> list:
        """Return ``_fit_and_score`` results for every (candidate, fold), in order.

        Parameters
        ----------
        base_estimator : estimator
            The search's (cloned) estimator.
        candidate_params : list of dict
            Candidates, in order.
        splits : list of (train, test)
            The folds, in order.
        contexts : list
            scikit-learn callback contexts, one per (candidate, fold), or Nones.
        partial_fit_epochs : int, optional
            Train fused models as this many ``partial_fit`` epochs (a stochastic
            solver, no ``early_stopping``), scoring each one's CV test fold after
            every epoch, instead of a ``fit``.
        policy : callable, optional
            Called with each engine call's ``(candidate, fold)`` per task, in task
            order; returns the :class:`~torchhpo.engine.policy.EpochPolicy` that
            may stop that call's models after any epoch (Optuna's pruners). A
            ``finished(task_index, result)`` method of the policy, if any, is
            called as each model of that call finishes.
        progress_left : (int, int or None), optional
            Fits and model-epochs the search expects from later calls (None
            epochs: as many per fit as this call's), for the bar's total; by
            default a halving search's remaining iterations, else none.
        """
        self.partial_fit_epochs, self.policy = partial_fit_epochs, policy
        n_candidates, n_splits = len(candidate_params), len(splits)
        if may_fuse(base_estimator):
            configured = [
                clone(base_estimator).set_params(**clone(params, safe=False))
                for params in candidate_params
            ]
        else:  # every fit configures its own clone: one set_params per fit
            configured = [base_estimator] * n_candidates
        fused, per_fit = self._plan(configured, splits)
        if self.journal is not None:
            for model in fused:
                c, s = divmod(model.index, n_splits)
                model.slot = (self.n_evaluated + c, s)
                model.key = model_key(candidate_params[c], *splits[s])
        if self.continuations is not None:
            for model in fused:
                c, s = divmod(model.index, n_splits)
                model.continuation = self.continuations.key(
                    candidate_params[c], *splits[s]
                )
        self.n_evaluated += n_candidates
        results: list = [None] * (n_candidates * n_splits)
        budgets = [partial_fit_epochs or _budget(est) for est in configured]
        total = sum(budgets[i // n_splits] for i in range(len(results)))
        if progress_left is None:
            left = halving_left(self.search, len(results), total)
        else:
            fits, epochs = progress_left
            if epochs is None:
                epochs = round(fits * total / max(len(results), 1))
            left = (fits, epochs)
        # The engine counts a partial_fit model's epochs as its budget too.
        with self.progress.stage(total, len(results), left) as bar:
            self._train(fused, splits, bar)
            self.convergence.collect(lambda: self._apply(fused), len(results))
            jobs = (
                delayed(_fit_and_score)(
                    clone(base_estimator),
                    self.X,
                    self.y,
                    train=splits[i % n_splits][0],
                    test=splits[i % n_splits][1],
                    parameters=candidate_params[i // n_splits],
                    split_progress=(i % n_splits, n_splits),
                    candidate_progress=(i // n_splits, n_candidates),
                    **self.kwargs,
                    caller=self.search,
                    callback_ctx=contexts[i],
                )
                for i in per_fit
            )
            if per_fit:
                for i, out in zip(per_fit, self.parallel(jobs), strict=True):
                    results[i] = out
                    bar.fits_done(1, budgets[i // n_splits])
            for i, out in self.score(fused, candidate_params, splits, contexts).items():
                results[i] = out
            refit = self.search.refit
            bar.scores(results, n_splits, refit if isinstance(refit, str) else None)
        return results


def _chain(*callbacks):
    """Return one ``on_result`` callback calling each given one (None: none)."""
    callbacks = [c for c in callbacks if c is not None]
    if not callbacks:
        return None
    if len(callbacks) == 1:
        return callbacks[0]

    def call(index: int, result: ModelResult) -> None:
        for callback in callbacks:
            callback(index, result)

    return call


def _stack(views: list[View]):
    """Concatenate views' rows into one array set (no copy for a single view)."""
    if len(views) == 1:
        view = views[0]
        return view.X, view.Y, view.sample_weight
    X = np.concatenate([v.X for v in views])
    Y = np.concatenate([v.Y for v in views])
    if all(v.sample_weight is None for v in views):
        return X, Y, None
    sw = np.concatenate(
        [
            np.ones(len(v.X)) if v.sample_weight is None else v.sample_weight
            for v in views
        ]
    )
    return X, Y, sw
