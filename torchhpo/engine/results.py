"""What a pack hands back: each finished model's weights, counters and curves.

When models stop, the pack copies their slots' weights (and optimizer state where
it is kept or the model continues later) to the host once, and assembles
scikit-learn's attributes from them: ``loss_curve_``, ``validation_scores_``,
``best_loss_``, ``n_iter_``, ``t_``, the convergence message, a failure, and the
state a halving rung or ``partial_fit`` continues from.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .spec import ModelResult, ModelState, OptimizerState


def _finite(state: ModelState) -> bool:
    """Whether every weight of ``state`` is finite."""
    return all(np.isfinite(w).all() for w in state.coefs + state.intercepts)


def extract(pack, slots: np.ndarray, resume: np.ndarray, counters=None) -> list[dict]:
    """Copy the weights (and optimizer state) of ``slots`` to the host.

    Each item holds the running ``coefs`` / ``intercepts``, the best ones of
    ``early_stopping`` models (``best_coefs`` / ``best_intercepts``), and the
    ``optimizer`` state where it is kept or the model is ``resume``-d.
    """
    index = torch.from_numpy(slots).to(pack.data.device)

    def host(tensors):
        return [t.index_select(0, index).cpu().numpy() for t in tensors]

    w, b = host(pack.weights), host(pack.biases)
    es = [pack.hypers[pack.occupant[s]].early_stopping for s in slots]
    bw = bb = None
    if any(es):
        bw, bb = host(pack.best_weights), host(pack.best_biases)
    with_optimizer = pack.keep_optimizer_state or resume.any()
    first = host(pack.first) if with_optimizer else None
    second = host(pack.second) if with_optimizer else None
    step = pack.opt.step.index_select(0, index).cpu().numpy()
    lr = (pack.tracker if counters is None else counters).learning_rate[slots]
    out = []
    for k in range(len(slots)):
        item = {
            "coefs": [x[k] for x in w],
            "intercepts": [x[k, 0] for x in b],
            "best_coefs": [x[k] for x in bw] if es[k] else None,
            "best_intercepts": [x[k, 0] for x in bb] if es[k] else None,
            "optimizer": None,
        }
        if first is not None:
            solver = pack.hypers[pack.occupant[slots[k]]].solver
            item["optimizer"] = OptimizerState(
                solver=solver,
                step=int(step[k]),
                learning_rate=float(lr[k]),
                first=[f[k] for f in first],
                second=[s[k] for s in second] if solver == "adam" else None,
            )
        out.append(item)
    return out


def finish(
    pack, slots, hit_max_iter, failed, pruned, counters=None
) -> list[tuple[int, ModelResult]]:
    """Results of the models in ``slots`` (masks and counters by slot).

    ``counters`` holds the rule's counters (``n_iter``, ``t``, ``best_loss``,
    ``best_val``, ``no_improvement``, ``learning_rate``); default: the host
    tracker's.
    """
    tracker = pack.tracker if counters is None else counters
    hit_max = hit_max_iter & ~failed & ~pruned
    resume = np.array(
        [
            pack.tasks[pack.occupant[s]].resumable and (hit_max[s] or pruned[s])
            for s in slots
        ],
        dtype=bool,
    )
    payloads = extract(pack, slots, resume, counters)
    finished = []
    for k, slot in enumerate(slots):
        pos = int(pack.occupant[slot])
        task, start = pack.tasks[pos], pack.start_states[pos]
        hyper = task.hyper
        n_iter = int(tracker.n_iter[slot])  # in this fit, earlier rungs included
        trained = n_iter - int(pack.epochs_done[pos])  # in this call
        curve = list(start.loss_curve) + pack.loss_history[pos, :trained].tolist()
        es = hyper.early_stopping
        val = None
        if es:
            val = list(start.validation_scores or [])
            val += pack.val_history[pos, :trained].tolist()
        payload = payloads[k]
        counters = dict(
            t=int(tracker.t[slot]),
            epochs_seen=start.epochs_seen + trained,
            loss_curve=curve,
            best_loss=None if es else float(tracker.best_loss[slot]),
            validation_scores=val,
            best_validation_score=float(tracker.best_val[slot]) if es else None,
            no_improvement_count=int(tracker.no_improvement[slot]),
        )
        state = ModelState(
            # scikit-learn restores the best weights when early stopping ends.
            coefs=payload["best_coefs"] if es else payload["coefs"],
            intercepts=payload["best_intercepts"] if es else payload["intercepts"],
            optimizer=payload["optimizer"] if pack.keep_optimizer_state else None,
            **counters,
        )
        resume_state = None
        if resume[k]:
            resume_state = ModelState(
                coefs=payload["coefs"],
                intercepts=payload["intercepts"],
                optimizer=payload["optimizer"],
                best_coefs=payload["best_coefs"],
                best_intercepts=payload["best_intercepts"],
                **counters,
            )
        message = None
        if hit_max[slot]:
            message = (
                f"Stochastic Optimizer: Maximum iterations ({hyper.max_iter}) "
                "reached and the optimization hasn't converged yet."
            )
        result = ModelResult(
            state=state,
            n_iter=n_iter,
            loss=float(curve[-1]) if curve else math.nan,
            hit_max_iter=bool(hit_max[slot]),
            failure=(
                "Solver produced non-finite parameter weights. The input data may "
                "contain large values and need to be preprocessed."
            )
            if failed[slot] or (es and not _finite(state))
            else None,
            convergence_message=message,
            fit_time=float(pack.model_time[pos]),
            resume=resume_state,
            pruned=bool(pruned[slot]),
        )
        finished.append((int(pack.task_ids[pos]), result))
    return finished
