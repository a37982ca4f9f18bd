"""Rungs: a model paused at max_iter r1 and continued to r2 is the model trained to r2.

And an epoch policy stops the models it names, leaves the others exactly as they
are without it, and is asked from forked worker processes too.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from torchhpo.engine import DeviceData, ModelTask, train_models
from torchhpo.engine.policy import EpochPolicy

from .test_pack_invariance import _assert_same_model, _dataset, _tasks

R1, R2, R3 = 3, 7, 16


def _data(kind: str) -> DeviceData:
    X, Y, sw = _dataset(kind)
    kind_name = "regression" if kind == "poisson" else kind
    return DeviceData.from_numpy(
        X,
        Y,
        target_kind=kind_name,
        loss={"poisson": "poisson", "regression": "squared_error"}.get(
            kind, "log_loss"
        ),
        sample_weight=sw,
        device="cpu",
        dtype=torch.float64,
    )


def _with_max_iter(task: ModelTask, max_iter: int, **changes) -> ModelTask:
    return replace(task, hyper=replace(task.hyper, max_iter=max_iter), **changes)


def _continue(data, tasks, rungs, **kwargs):
    """Train through ``rungs`` (max_iter values), continuing paused models."""
    current = [_with_max_iter(t, rungs[0], resumable=True) for t in tasks]
    final = [None] * len(tasks)
    for k in range(len(rungs)):
        results = train_models(data, current, **kwargs)
        for i, result in enumerate(results):
            final[i] = result
        if k + 1 == len(rungs):
            break
        nxt = rungs[k + 1]
        current = [
            _with_max_iter(
                t,
                nxt,
                init=r.resume,
                epochs_done=r.n_iter,
                resumable=True,
            )
            if r.resume is not None
            else _with_max_iter(t, nxt, resumable=True)
            for t, r in zip(current, results, strict=True)
        ]
        # Converged / failed models are final: retraining them must give the same.
    return final


@pytest.mark.parametrize("kind", ["multiclass", "regression", "binary", "poisson"])
def test_continued_equals_scratch(kind):
    data = _data(kind)
    tasks = _tasks(data.X.shape[0], "auto")
    scratch = train_models(data, [_with_max_iter(t, R3) for t in tasks])
    continued = _continue(data, tasks, [R1, R2, R3])
    for i, (got, ref) in enumerate(zip(continued, scratch, strict=True)):
        _assert_same_model(got, ref, f"model {i} ({kind})")


def test_resume_state_only_for_paused_models():
    data = _data("multiclass")
    tasks = [_with_max_iter(t, R1, resumable=True) for t in _tasks(360, "auto")]
    results = train_models(data, tasks)
    for task, result in zip(tasks, results, strict=True):
        paused = result.hit_max_iter
        assert (result.resume is not None) == paused
        if paused:
            assert result.n_iter == R1
            assert result.resume.optimizer is not None
            assert (result.resume.best_coefs is not None) == task.hyper.early_stopping
    # The list of configurations holds models that converge before the first rung.
    assert any(r.resume is None for r in results)
    assert any(r.resume is not None for r in results)


def test_early_stopping_scored_model_is_best_and_resume_is_running():
    data = _data("multiclass")
    es = [t for t in _tasks(360, "auto") if t.hyper.early_stopping]
    results = train_models(data, [_with_max_iter(t, R2, resumable=True) for t in es])
    for result in results:
        if result.resume is None:
            continue
        assert result.state.coefs is not result.resume.coefs
        best = result.resume.best_coefs
        for a, b in zip(result.state.coefs, best, strict=True):
            np.testing.assert_array_equal(a, b)


class _DropBelow(EpochPolicy):
    """Stop models whose score is below ``threshold`` from epoch ``after`` on."""

    def __init__(self, threshold: float, after: int) -> None:
        self.threshold = threshold
        self.after = after
        self.calls: list[tuple] = []

    def end_epoch(self, models, epochs, scores):
        self.calls.append((models.copy(), epochs.copy(), scores.copy()))
        return (epochs >= self.after) & (scores < self.threshold)


@pytest.mark.slow
@pytest.mark.parametrize("n_workers", [1, 2])
def test_policy_stops_named_models_and_spares_the_rest(n_workers):
    data = _data("multiclass")
    base = [_with_max_iter(t, 12) for t in _tasks(360, "auto")]
    rng = np.random.RandomState(0)
    tasks = [
        replace(t, score_index=rng.choice(360, 60, replace=False), resumable=True)
        for t in base
    ]
    plain = train_models(data, tasks, max_pack_size=6)
    policy = _DropBelow(threshold=0.8, after=4)
    pruned = train_models(
        data, tasks, max_pack_size=6, policy=policy, n_workers=n_workers
    )
    assert policy.calls, "the policy was never asked"
    seen = np.concatenate([c[0] for c in policy.calls])
    assert set(seen) == set(range(len(tasks)))
    n_pruned = 0
    for i, (got, ref) in enumerate(zip(pruned, plain, strict=True)):
        if got.pruned:
            n_pruned += 1
            assert got.n_iter >= 4
            assert got.n_iter <= ref.n_iter
            assert got.resume is not None
            np.testing.assert_allclose(
                got.state.loss_curve, ref.state.loss_curve[: got.n_iter], atol=1e-10
            )
        else:
            _assert_same_model(got, ref, f"model {i}")
    assert 0 < n_pruned < len(tasks)


def test_policy_scores_are_accuracies_on_score_rows():
    data = _data("multiclass")
    (task,) = [_with_max_iter(t, 2) for t in _tasks(360, "auto")[:1]]
    rows = np.arange(100, 160)
    task = replace(task, score_index=rows, resumable=True)
    policy = _DropBelow(threshold=-1.0, after=99)
    (result,) = train_models(data, [task], policy=policy, keep_optimizer_state=True)
    # Rebuild the model after epoch 2 and score it on the rows by hand.
    from torchhpo.engine import functional as F

    weights = [torch.as_tensor(c)[None] for c in result.state.coefs]
    biases = [torch.as_tensor(b)[None, None] for b in result.state.intercepts]
    out = F.forward(
        data.X[torch.as_tensor(rows)][None],
        weights,
        biases,
        [(0, 1, task.hyper.activation)],
        data.out_activation,
    )[-1][0]
    expected = (out.argmax(1) == data.Y[torch.as_tensor(rows)].argmax(1)).double()
    assert policy.calls[-1][2][0] == pytest.approx(float(expected.mean()), abs=1e-15)


def test_groups_share_a_pack():
    from torchhpo.engine import plan_packs

    tasks = [
        replace(t, group=i // 5)
        for i, t in enumerate(_tasks(360, "auto", n_configs=1) * 40)
    ]
    packs = plan_packs(tasks, max_pack_size=24)
    for pack in packs:
        assert len(pack) <= 24
        groups = {tasks[i].group for i in pack}
        for g in groups:
            assert all(tasks[i].group != g for p in packs if p is not pack for i in p)
