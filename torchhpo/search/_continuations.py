"""Halving on ``max_iter``: survivors continue training instead of starting again.

scikit-learn's successive halving trains every surviving candidate from scratch at
each iteration, with a larger ``max_iter``. A model of the engine's stochastic
solvers trained to ``r1`` epochs and continued to ``r2`` is exactly the model trained
from scratch to ``r2`` (same initial weights, shuffles, optimizer state and stopping
rule; see :mod:`~torchhpo.engine.policy`), so here each iteration only trains the
epochs it adds:

* a model that stopped at the previous iteration's ``max_iter`` continues from its
  resume state (``ModelTask.epochs_done``);
* a model that converged (or failed) before it is final: any larger ``max_iter``
  gives the same result, so it is reused as is, with no training and a zero
  ``fit_time``;
* anything else (``lbfgs``, a changed parameter) trains from scratch.

A model is known by its candidate's parameters without the resource and by its fold.
"""

from __future__ import annotations

from dataclasses import replace

from ..engine import Hyperparams, ModelResult, ModelTask
from ._checkpoint import model_key


def _same_but_max_iter(a: Hyperparams, b: Hyperparams) -> bool:
    return replace(a, max_iter=0) == replace(b, max_iter=0)


class Continuations:
    """Earlier iterations' results, by (candidate without resource, fold).

    Parameters
    ----------
    resource : str
        The parameter the iterations raise (``max_iter``, or ``step__max_iter`` in
        a Pipeline): left out of the key.
    """

    def __init__(self, resource: str) -> None:
        self.resource = resource
        self._results: dict[str, tuple[Hyperparams, ModelResult]] = {}

    def key(self, parameters: dict, train, test) -> str:
        """Return the key of a (candidate, fold) model across iterations."""
        rest = {k: v for k, v in parameters.items() if k != self.resource}
        return model_key(rest, train, test)

    def task(self, key: str, task: ModelTask) -> ModelTask | None:
        """Return ``task`` continued from the stored model, or None if that is final.

        The stored model is final when it converged (or failed) before, or when it
        was paused at this very ``max_iter`` (an iteration repeating a resource).

        A task with no usable stored model is returned resumable, as it is.
        """
        stored = self._results.get(key)
        fresh = replace(task, resumable=True)
        if stored is None or task.hyper.solver == "lbfgs":
            return fresh
        hyper, result = stored
        max_iter = task.hyper.max_iter
        if not _same_but_max_iter(hyper, task.hyper) or result.n_iter > max_iter:
            return fresh
        if result.resume is None and result.hit_max_iter:
            return fresh  # paused without a state (not resumable)
        if result.resume is None or result.n_iter == max_iter:
            return None  # converged before, or paused exactly here: final
        return replace(fresh, init=result.resume, epochs_done=result.n_iter)

    def final(self, key: str) -> ModelResult:
        """Return the stored result of a final model (not trained again)."""
        return replace(self._results[key][1], fit_time=0.0)

    def store(self, key: str, hyper: Hyperparams, result: ModelResult) -> None:
        """Remember a model's result for the next iteration."""
        self._results[key] = (hyper, result)
