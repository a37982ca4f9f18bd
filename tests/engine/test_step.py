"""The fused step against the unfused computation it replaces.

One step of :class:`~torchhpo.engine.step.FusedStep` (blocks, workspace, scaling
folded into the delta, (M, K, B) outputs, per-epoch loss arithmetic) must update
parameters, moments and counters, and report losses, as the reference written
with :mod:`~torchhpo.engine.functional` and the optimizers' ``*_step_``
functions does, in float64, for every output kind, mixed activations and
solvers; the single-step API must match the epoch API.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchhpo.engine import DeviceData, Hyperparams, ModelTask, Pack, native
from torchhpo.engine import functional as F
from torchhpo.engine.optimizers import adam_step_, sgd_step_

CONFIGS = [
    dict(activation="relu", solver="adam"),
    dict(activation="tanh", solver="adam", beta_1=0.8, alpha=1e-2),
    dict(activation="logistic", solver="sgd", learning_rate_init=0.05),
    dict(activation="identity", solver="sgd", nesterovs_momentum=False, alpha=0.1),
    dict(activation="tanh", solver="sgd", momentum=0.5),
]

# (target kind, loss, number of outputs)
PROBLEMS = [
    ("multiclass", "log_loss", 3),
    ("binary", "log_loss", 1),
    ("multilabel", "log_loss", 2),
    ("regression", "squared_error", 2),
    ("regression", "poisson", 1),
]


@pytest.fixture(params=["native", "native-steps", "aten"])
def step_path(request, monkeypatch):
    """Run the test on the fused C kernels (where they build) and on ATen alone.

    ``native`` runs a softmax log-loss epoch as one ``run_epoch`` call where
    torch carries MKL; ``native-steps`` makes the same C calls from Python, step
    by step, as on builds without MKL.
    """
    if request.param == "aten":
        monkeypatch.setattr(native, "kernels", lambda dtype, device: None)
        return request.param
    if native.kernels(torch.float64, torch.device("cpu")) is None:
        pytest.skip("the fused CPU kernels did not build here (no C compiler?)")
    if request.param == "native-steps":
        for dtype in (torch.float32, torch.float64):
            monkeypatch.setattr(native.kernels(dtype, torch.device("cpu")), "mkl", None)
    return request.param


def _pack(kind, loss, n_outputs, hidden, sample_weight=False):
    rng = np.random.RandomState(0)
    n = 90
    X = rng.normal(size=(n, 5))
    if kind == "multiclass":
        Y = np.eye(n_outputs)[rng.randint(n_outputs, size=n)]
    elif kind in ("binary", "multilabel"):
        Y = rng.randint(2, size=(n, n_outputs)).astype(float)
    else:
        Y = rng.poisson(1.5, size=(n, n_outputs)).astype(float)
    sw = rng.uniform(0.5, 2.0, size=n) if sample_weight else None
    data = DeviceData.from_numpy(
        X, Y, target_kind=kind, loss=loss, sample_weight=sw, dtype=torch.float64
    )
    tasks = []
    for i, config in enumerate(CONFIGS):
        hyper = Hyperparams(hidden_layer_sizes=hidden, batch_size=16, **config)
        train = rng.permutation(n)[: n - 9 * i]  # several lengths: uneven steps
        tasks.append(ModelTask(hyper, train, seed=i))
    return Pack(data, tasks)


def _reference_step(pack, idx, weight, denom, count, loss_acc, step_index):
    """The step as the unfused code wrote it: functional ops, optimizer steps."""
    data = pack.data
    M, B = idx.shape
    flat = idx.view(-1)
    xb = data.X.index_select(0, flat).view(M, B, -1)
    yb = data.Y.index_select(0, flat).view(M, B, -1)
    weights = [w.clone() for w in pack.weights]
    biases = [b.clone() for b in pack.biases]
    acts = F.forward(xb, weights, biases, pack.act_runs, data.out_activation)
    loss = F.per_model_loss(acts[-1], yb, weight, denom, data.loss, data.out_activation)
    penalty = F.squared_weight_sum(weights) * pack.alpha.view(-1) * 0.5
    loss_acc.add_((loss + penalty / denom) * count)
    coef_grads, intercept_grads = F.backward(
        acts, yb, weight, denom, weights, pack.alpha, pack.act_runs
    )
    params = weights + biases
    first = [t.clone() for t in pack.first]
    second = [t.clone() for t in pack.second]
    step = pack.opt.step.clone()
    before = [t.clone() for t in params + first + second]
    grads = coef_grads + intercept_grads
    for start, stop, kind in pack.opt_runs:
        if kind == "adam":
            adam_step_(params, grads, first, second, pack.opt, start, stop)
        else:
            sgd_step_(params, grads, first, pack.opt, start, stop, kind == "nesterov")
    if step_index in pack.uneven_steps:
        index = pack.inactive[step_index]
        for t, b in zip(params + first + second, before, strict=True):
            t.index_copy_(0, index, b.index_select(0, index))
        pack.opt.step.index_copy_(0, index, step.index_select(0, index))
    result = params + first + second, pack.opt.step.clone()
    pack.opt.step.copy_(step)  # leave the pack as it was
    return result


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("hidden", [(), (6,), (7, 4)])
@pytest.mark.parametrize("kind, loss, n_outputs", PROBLEMS)
def test_fused_epoch_matches_unfused_steps(
    kind, loss, n_outputs, hidden, weighted, step_path
):
    pack = _pack(kind, loss, n_outputs, hidden, sample_weight=weighted)
    assert (pack._fused_step().native is not None) == (step_path != "aten")
    if step_path != "aten":
        # The epoch is one run_epoch call where torch carries MKL, whatever the loss.
        has_mkl = native.kernels(torch.float64, torch.device("cpu")).mkl is not None
        program = pack._fused_step()._program is not None
        assert program == (has_mkl and step_path == "native")
    assert pack.uneven_steps  # some models take fewer steps
    idx, weight, denom = pack._epoch_batches()
    expected_loss = torch.zeros(pack.size, dtype=torch.float64)
    # Reference, step by step, from the fused epoch's own starting points.
    for s in range(pack.n_steps):
        ref, ref_step = _reference_step(
            pack, idx[s], weight[s], denom[s], pack.count[s], expected_loss, s
        )
        got_loss = torch.zeros(pack.size, dtype=torch.float64)
        pack._step(idx[s], weight[s], denom[s], pack.count[s], got_loss, s)
        got = pack.weights + pack.biases + pack.first + pack.second
        for a, b in zip(got, ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
        assert torch.equal(pack.opt.step, ref_step)
        # Carry on from the reference state, so that errors cannot add up.
        for a, b in zip(got, ref, strict=True):
            a.copy_(b)
    # The epoch API (loss arithmetic once per epoch) against the reference.
    fresh = _pack(kind, loss, n_outputs, hidden, sample_weight=weighted)
    epoch_loss = torch.zeros(fresh.size, dtype=torch.float64)
    fresh._epoch_runner().run(idx, weight, denom, fresh.count, epoch_loss)
    torch.testing.assert_close(epoch_loss, expected_loss, rtol=1e-9, atol=1e-12)
    # ... and its parameters against the reference's (the carried-on states).
    got = fresh.weights + fresh.biases + fresh.first + fresh.second
    ref = pack.weights + pack.biases + pack.first + pack.second
    for a, b in zip(got, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert torch.equal(fresh.opt.step, pack.opt.step)


def test_single_steps_equal_the_epoch(step_path):
    a = _pack("multiclass", "log_loss", 3, (6, 5))
    b = _pack("multiclass", "log_loss", 3, (6, 5))
    idx, weight, denom = a._epoch_batches()
    loss_a = torch.zeros(a.size, dtype=torch.float64)
    a._epoch_runner().run(idx, weight, denom, a.count, loss_a)
    loss_b = torch.zeros(b.size, dtype=torch.float64)
    for s in range(b.n_steps):
        b._step(idx[s], weight[s], denom[s], b.count[s], loss_b, s)
    for x, y in zip(
        a.weights + a.biases + a.first + a.second,
        b.weights + b.biases + b.first + b.second,
        strict=True,
    ):
        assert torch.equal(x, y)
    assert torch.equal(a.opt.step, b.opt.step)
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-13, atol=0)


def test_assigned_lists_replace_the_blocks():
    # Code that assigns whole per-layer lists (compaction, resumed states) is
    # honoured: the step then trains on the new tensors.
    pack = _pack("multiclass", "log_loss", 3, (6,))
    new = [torch.zeros_like(w) for w in pack.weights]
    pack.weights = new
    assert all(torch.equal(w, torch.zeros_like(w)) for w in pack.weights)
    blocks = pack._params.blocks
    assert all(torch.equal(b[:, :-1], torch.zeros_like(b[:, :-1])) for b in blocks)
    pack.weights[0][1] = 1.0  # in place, through the views
    assert torch.equal(pack._params.blocks[0][1, :-1], torch.ones_like(new[0][1]))
