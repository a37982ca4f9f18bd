"""Train many models: group them into packs, train each pack, return results in order.

This is the engine's entry point for both callers: an estimator's ``fit`` is a call
with one task; a search hands every (candidate, fold) model at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from .data import DeviceData
from .lbfgs import fit_lbfgs
from .pack import Pack
from .spec import ModelResult, ModelTask


def plan_packs(
    tasks: Sequence[ModelTask], max_pack_size: int | None = None
) -> list[list[int]]:
    """Group stochastic-solver tasks into packs of identical shapes.

    Parameters
    ----------
    tasks : sequence of ModelTask
    max_pack_size : int, optional
        Most models per pack; larger groups are split in order.

    Returns
    -------
    list of list of int
        Task indices per pack; lbfgs tasks are left out (they train alone).
    """
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, task in enumerate(tasks):
        if task.hyper.solver != "lbfgs":
            groups[task.hyper.shape_key()].append(i)
    packs = []
    for members in groups.values():
        step = max_pack_size or len(members)
        packs.extend(members[i : i + step] for i in range(0, len(members), step))
    return packs


def train_models(
    data: DeviceData,
    tasks: Sequence[ModelTask],
    *,
    max_pack_size: int | None = None,
    keep_optimizer_state: bool = False,
    on_finished: Callable[[int], None] | None = None,
    verbose: bool = False,
) -> list[ModelResult]:
    """Train every task on ``data``; return one result per task, in task order.

    Parameters
    ----------
    data : DeviceData
        Shared inputs and encoded targets on the training device.
    tasks : sequence of ModelTask
        Models to train (any mix of shapes and solvers).
    max_pack_size : int, optional
        Cap on models per pack.
    keep_optimizer_state : bool
        Return optimizer moments (needed to continue with ``partial_fit``).
    on_finished : callable, optional
        Called with a count each time models finish (progress bars).
    verbose : bool
        Passed to lbfgs.

    Returns
    -------
    list of ModelResult
    """
    results: list[ModelResult | None] = [None] * len(tasks)
    for members in plan_packs(tasks, max_pack_size):
        pack = Pack(data, [tasks[i] for i in members], keep_optimizer_state)
        for local, result in pack.train(on_finished):
            results[members[local]] = result
    for i, task in enumerate(tasks):
        if task.hyper.solver == "lbfgs":
            results[i] = fit_lbfgs(data, task, verbose=verbose)
            if on_finished is not None:
                on_finished(1)
    return results  # type: ignore[return-value]
