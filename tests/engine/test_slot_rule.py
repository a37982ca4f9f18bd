"""The device stopping rule (:mod:`torchhpo.engine.slot_rule`) against the host rule.

Three oracles: :class:`~torchhpo.engine.convergence.ConvergenceTracker` run one model
at a time (every counter, every epoch); scikit-learn's own fits (their loss curves
fed through the rule stop where scikit-learn stopped); and the rule itself looked at
after every epoch (K=1) against K-epoch blocks. Plus proofs that an epoch never reads
the device from the host: a run on ``meta`` tensors and a dispatch-mode op census.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from torch.utils._python_dispatch import TorchDispatchMode

from torchhpo.engine.convergence import ConvergenceTracker
from torchhpo.engine.slot_rule import EpochValues, SlotRule
from torchhpo.engine.spec import Hyperparams, ModelState, OptimizerState

EPOCHS = 24  # length of every model's loss / validation sequence


# -- random and adversarial models --------------------------------------------------
@dataclass
class Model:
    hyper: Hyperparams
    state: ModelState
    incremental: bool
    epochs_done: int
    incremental_epochs: int
    n_train: int
    losses: np.ndarray
    vals: np.ndarray


def _sequence(rng, tol: float, n: int, higher_is_better: bool) -> np.ndarray:
    """Scores with plateaus, exact ties with ``tol``, NaN and infinities."""
    steps = rng.choice([tol, -tol, 0.0, 2 * tol, -2 * tol, 0.5 * tol], size=n)
    steps = np.where(rng.random(n) < 0.3, rng.normal(0, 3 * tol, n), steps)
    sign = 1.0 if higher_is_better else -1.0
    values = 4.0 + sign * np.cumsum(steps)
    special = rng.random(n)
    values[special < 0.05] = np.nan
    values[(special >= 0.05) & (special < 0.08)] = np.inf
    values[(special >= 0.08) & (special < 0.10)] = -np.inf
    return values


def _random_model(rng) -> Model:
    solver = rng.choice(["sgd", "sgd", "adam"])
    schedule = rng.choice(["constant", "invscaling", "adaptive", "adaptive"])
    # Dyadic tolerances make `loss == best - tol` exact ties; others are random.
    tol = float(rng.choice([0.25, 2.0**-6, 1e-4, rng.uniform(0, 0.5), 0.0]))
    max_iter = int(rng.choice([1, 2, 3, rng.integers(1, 16)]))
    incremental = bool(rng.random() < 0.2)
    early_stopping = bool(not incremental and rng.random() < 0.4)
    n_iter_no_change = rng.choice([1, 2, 3, rng.integers(1, 30), np.inf])
    # adaptive learning rates near 1e-6: one division (or none) before the stop.
    lr_init = float(rng.choice([1e-3, 1e-6, 5e-6, 2.5e-5, 1.1e-6, rng.uniform(0, 1)]))
    hyper = Hyperparams(
        solver=str(solver),
        learning_rate=str(schedule),
        learning_rate_init=lr_init,
        power_t=float(rng.choice([0.5, rng.uniform(0.01, 2.0)])),
        max_iter=max_iter,
        tol=tol,
        n_iter_no_change=n_iter_no_change,
        early_stopping=early_stopping,
    )
    state = ModelState(coefs=[], intercepts=[])
    if rng.random() < 0.4:  # resumed counters (warm start, partial_fit, a rung)
        state = replace(
            state,
            t=int(rng.integers(0, 10**6)),
            no_improvement_count=int(rng.integers(0, 4)),
            best_loss=float(rng.choice([np.inf, rng.uniform(0, 5)])),
            best_validation_score=rng.choice([None, float(rng.uniform(0, 5))]),
            optimizer=OptimizerState(
                solver=str(solver),
                step=3,
                learning_rate=float(rng.uniform(1e-7, 1e-2)),
                first=[],
                second=None,
            ),
        )
    epochs_done = int(rng.integers(0, max_iter)) if rng.random() < 0.3 else 0
    return Model(
        hyper=hyper,
        state=state,
        incremental=incremental,
        epochs_done=epochs_done,
        incremental_epochs=int(rng.integers(1, 6)),
        n_train=int(rng.integers(1, 5000)),
        losses=_sequence(rng, max(tol, 1e-3), EPOCHS, higher_is_better=False),
        vals=_sequence(rng, max(tol, 1e-3), EPOCHS, higher_is_better=True),
    )


def _admit(rule: SlotRule, slot: int, model: Model) -> None:
    rule.admit(
        slot,
        model.hyper,
        model.state,
        incremental=model.incremental,
        epochs_done=model.epochs_done,
        incremental_epochs=model.incremental_epochs,
    )


# -- the host rule, one model at a time ------------------------------------------------
def _host_trace(model: Model, dtype, with_vals: bool = True) -> list[dict]:
    """Every epoch's counters and decisions of the host rule, up to the stop."""
    tracker = ConvergenceTracker(
        [model.hyper],
        [model.state],
        [model.incremental],
        epochs_done=[model.epochs_done],
        incremental_epochs=[model.incremental_epochs],
    )
    trace = []
    for e in range(EPOCHS):
        loss = model.losses[e : e + 1].astype(dtype)
        val = model.vals[e : e + 1].astype(dtype) if with_vals else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf
            out = tracker.end_epoch(loss, val, np.array([model.n_train]))
        es = model.hyper.early_stopping
        trace.append(
            dict(
                n_iter=int(tracker.n_iter[0]),
                t=int(tracker.t[0]),
                no_improvement_count=int(tracker.no_improvement[0]),
                best_loss=np.inf if es else float(tracker.best_loss[0]),
                best_validation_score=float(tracker.best_val[0]) if es else -np.inf,
                learning_rate=float(tracker.learning_rate[0]),
                converged=bool(out.converged[0]),
                hit_max_iter=bool(out.hit_max_iter[0]),
                improved=bool(out.improved[0]),
            )
        )
        if out.stopped[0]:
            return trace
    raise AssertionError("a model outlived its sequence")


def _assert_epoch_equal(got: dict, want: dict, model: Model, context: str) -> None:
    for key, value in want.items():
        if key == "learning_rate" and model.hyper.learning_rate == "invscaling":
            # torch's pow and NumPy's each differ from the correctly rounded
            # power by up to one ulp, in a few percent of cases.
            np.testing.assert_array_max_ulp(got[key], value, maxulp=2)
        else:
            assert got[key] == value or (np.isnan(got[key]) and np.isnan(value)), (
                f"{context}: {key} {got[key]!r} != {value!r} for {model.hyper}"
            )


def _slot_epoch(report, outcome, slot: int) -> dict:
    return dict(
        n_iter=int(report.n_iter[slot]),
        t=int(report.t[slot]),
        no_improvement_count=int(report.no_improvement_count[slot]),
        best_loss=float(report.best_loss[slot]),
        best_validation_score=float(report.best_validation_score[slot]),
        learning_rate=float(report.learning_rate[slot]),
        converged=bool(outcome["converged"][slot]),
        hit_max_iter=bool(outcome["hit_max_iter"][slot]),
        improved=bool(outcome["improved"][slot]),
    )


def _run_slots(models, n_slots, dtype, seed, release_rate=0.0, with_vals=True):
    """Models flow through a pack's slots; each epoch is checked against the host.

    Freed slots take the next model at once; with ``release_rate``, random live
    models are released mid-way (as a pruner would) and their slot reused.
    """
    rng = np.random.default_rng(seed)
    rule = SlotRule(n_slots, "cpu")
    queue = list(range(len(models)))
    traces = {j: _host_trace(models[j], dtype, with_vals) for j in queue}
    holder = [-1] * n_slots
    epoch_of = [0] * n_slots
    done = 0
    torch_dtype = torch.float32 if dtype == np.float32 else torch.float64
    while queue or any(h >= 0 for h in holder):
        for slot in range(n_slots):
            if holder[slot] < 0 and queue:
                holder[slot], epoch_of[slot] = queue.pop(0), 0
                _admit(rule, slot, models[holder[slot]])
        losses = np.full(n_slots, 7.0)  # what empty slots compute does not matter
        vals = np.full(n_slots, -3.0)
        n_train = np.zeros(n_slots, dtype=np.int64)
        for slot, j in enumerate(holder):
            if j >= 0:
                losses[slot] = models[j].losses[epoch_of[slot]]
                vals[slot] = models[j].vals[epoch_of[slot]]
                n_train[slot] = models[j].n_train
        out = rule.end_epoch(
            torch.from_numpy(losses).to(torch_dtype),
            torch.from_numpy(vals).to(torch_dtype) if with_vals else None,
            torch.from_numpy(n_train),
        )
        outcome = {name: getattr(out, name).numpy().copy() for name in out._fields}
        report = rule.read()
        assert not outcome["stopped"][[h < 0 for h in holder]].any()
        for slot, j in enumerate(holder):
            if j < 0:
                continue
            want = traces[j][epoch_of[slot]]
            got = _slot_epoch(report, outcome, slot)
            _assert_epoch_equal(
                got, want, models[j], f"model {j} epoch {epoch_of[slot]}"
            )
            np.testing.assert_equal(
                outcome["learning_rate"][slot], report.learning_rate[slot]
            )
            epoch_of[slot] += 1
            finished = epoch_of[slot] == len(traces[j])
            assert bool(outcome["stopped"][slot]) == finished
            if finished:
                assert report.stop_epoch[slot] == 0
                holder[slot] = -1
                done += 1
            elif rng.random() < release_rate:
                rule.release(slot)
                holder[slot] = -1
                done += 1
        assert not rule.live.numpy()[[h < 0 for h in holder]].any()
        np.testing.assert_array_equal(rule.live_slots(), [h >= 0 for h in holder])
    return done


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_end_epoch_equals_host_rule_through_reused_slots(dtype, seed):
    rng = np.random.default_rng(seed)
    models = [_random_model(rng) for _ in range(150)]
    assert _run_slots(models, n_slots=7, dtype=dtype, seed=seed) == len(models)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_released_slots_take_fresh_models(dtype):
    rng = np.random.default_rng(11)
    models = [_random_model(rng) for _ in range(120)]
    assert _run_slots(models, n_slots=5, dtype=dtype, seed=3, release_rate=0.2) == 120


def test_missing_validation_scores_never_improve():
    rng = np.random.default_rng(5)
    models = [_random_model(rng) for _ in range(60)]
    models = [replace(m, hyper=replace(m.hyper, early_stopping=True)) for m in models]
    models = [replace(m, incremental=False) for m in models]
    assert _run_slots(models, 4, np.float64, seed=5, with_vals=False) == 60


def test_adversarial_cases_are_covered():
    """The random models exercise every edge the rule has (else the test is weak)."""
    rng = np.random.default_rng(0)
    models = [_random_model(rng) for _ in range(150)]
    seen = set()
    for m in models:
        trace = _host_trace(m, np.float64)
        last = trace[-1]
        h = m.hyper
        adaptive = h.solver == "sgd" and h.learning_rate == "adaptive"
        if adaptive and any(
            b["learning_rate"] < a["learning_rate"]
            for a, b in itertools.pairwise(trace)
        ):
            seen.add("adaptive division")
        if adaptive and last["converged"] and last["learning_rate"] <= 1e-6:
            seen.add("adaptive stop at 1e-6")
        if h.solver == "sgd" and h.learning_rate == "invscaling":
            seen.add("invscaling")
        if m.incremental and len(trace) == m.incremental_epochs:
            seen.add("incremental epochs")
        if m.epochs_done and last["hit_max_iter"]:
            seen.add("epochs_done from a rung")
        if h.max_iter == 1:
            seen.add("max_iter=1")
        if h.n_iter_no_change > h.max_iter:
            seen.add("n_iter_no_change > max_iter")
        if np.isnan(m.losses[: len(trace)]).any():
            seen.add("nan loss")
        if np.isinf(m.losses[: len(trace)]).any():
            seen.add("inf loss")
        if last["converged"] and not m.incremental:
            seen.add("converged")
        for e in range(1, len(trace)):
            best = trace[e - 1]["best_loss"]
            if not h.early_stopping and m.losses[e] == best - h.tol:
                seen.add("tie with tol")
    assert seen == {
        "adaptive division",
        "adaptive stop at 1e-6",
        "invscaling",
        "incremental epochs",
        "epochs_done from a rung",
        "max_iter=1",
        "n_iter_no_change > max_iter",
        "nan loss",
        "inf loss",
        "converged",
        "tie with tol",
    }


# -- scikit-learn's own fits -------------------------------------------------------
SKLEARN_FITS = [
    dict(solver="adam", tol=1e-2, n_iter_no_change=2, max_iter=60),
    dict(solver="adam", max_iter=4),
    dict(solver="sgd", learning_rate="adaptive", tol=0.05, n_iter_no_change=1),
    dict(solver="sgd", learning_rate="invscaling", tol=1e-3, max_iter=30),
    dict(solver="sgd", learning_rate="constant", momentum=0.5, tol=1e-3),
    dict(solver="adam", early_stopping=True, tol=1e-3, n_iter_no_change=3),
    dict(
        solver="sgd",
        learning_rate="adaptive",
        early_stopping=True,
        tol=1e-2,
        n_iter_no_change=1,
        learning_rate_init=0.01,
    ),
]


@pytest.mark.parametrize("params", SKLEARN_FITS)
def test_sklearn_curves_stop_where_sklearn_stopped(params):
    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16.0, y[:300]
    params = {"max_iter": 200, **params}
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    hyper = Hyperparams(
        **{k: v for k, v in params.items() if k != "momentum"},
        hidden_layer_sizes=(8,),
    )
    curve = np.asarray(clf.loss_curve_)
    vals = np.asarray(clf.validation_scores_ or [np.nan] * len(curve))
    n_train = clf.t_ // clf.n_iter_
    rule = SlotRule(3, "cpu", block_epochs=len(curve) + 5)
    rule.admit(1, hyper, ModelState(coefs=[], intercepts=[]))
    padded = np.concatenate([curve, np.full(5, curve[-1])])
    padded_vals = np.concatenate([vals, np.full(5, np.nan)])

    epochs = iter(range(len(padded)))

    def epoch(live):
        k = next(epochs)
        return EpochValues(
            torch.full((3,), padded[k], dtype=torch.float64),
            torch.full((3,), padded_vals[k], dtype=torch.float64),
        )

    rule.run_block(epoch, torch.full((3,), n_train))
    report = rule.read()
    assert report.stop_epoch[1] + 1 == clf.n_iter_
    assert report.n_iter[1] == clf.n_iter_
    assert report.t[1] == clf.t_
    assert report.no_improvement_count[1] == clf._no_improvement_count
    assert report.hit_max_iter[1] == (clf.n_iter_ == clf.max_iter)
    np.testing.assert_array_equal(report.loss_history[: clf.n_iter_, 1], curve)
    if clf.early_stopping:
        assert report.best_validation_score[1] == clf.best_validation_score_
    else:
        assert report.best_loss[1] == clf.best_loss_
    if clf.solver == "sgd":
        np.testing.assert_array_max_ulp(
            report.learning_rate[1], clf._optimizer.learning_rate, maxulp=2
        )
    assert report.stop_epoch[[0, 2]].tolist() == [-1, -1]  # empty slots never stop


# -- K epochs per host look -----------------------------------------------------------
class ToyPack:
    """A stand-in step: per-slot quadratic models trained by gradient descent.

    A model's losses depend only on its own weights and its own epoch count, never
    on its slot or on when it was admitted, as the engine promises. Dead slots are
    left untouched with ``torch.where`` on the update mask.
    """

    def __init__(self, n_slots: int, dtype, block_epochs: int):
        self.rule = SlotRule(n_slots, "cpu", block_epochs=block_epochs, lr_dtype=dtype)
        z = dict(dtype=dtype)
        self.w = torch.zeros(n_slots, 3, **z)
        self.best_w = torch.zeros(n_slots, 3, **z)
        self.target = torch.zeros(n_slots, 3, **z)
        self.noise = torch.zeros(n_slots, EPOCHS, **z)
        self.val_noise = torch.zeros(n_slots, EPOCHS, **z)
        self.epoch_of = torch.zeros(n_slots, dtype=torch.int64)
        self.n_train = torch.zeros(n_slots, dtype=torch.int64)

    def admit(self, slot, model: Model, seed: int):
        g = torch.Generator().manual_seed(seed)
        dtype = self.w.dtype
        self.w[slot] = torch.randn(3, generator=g, dtype=torch.float64).to(dtype)
        self.best_w[slot] = self.w[slot]
        self.target[slot] = torch.randn(3, generator=g, dtype=torch.float64).to(dtype)
        self.noise[slot] = torch.from_numpy(np.nan_to_num(model.losses, posinf=9.0))
        self.val_noise[slot] = torch.from_numpy(np.nan_to_num(model.vals, neginf=-9))
        self.epoch_of[slot] = 0
        self.n_train[slot] = model.n_train
        # a fresh state keeps the learning rate meaningful for the weights
        fresh = replace(model, state=ModelState(coefs=[], intercepts=[]))
        _admit(self.rule, slot, fresh)

    def epoch(self, live):
        lr = self.rule.step_learning_rate
        diff = self.w - self.target
        k = self.epoch_of.clamp(max=EPOCHS - 1)[:, None]
        loss = diff.square().mean(1) * 0.1 + self.noise.gather(1, k)[:, 0] * 0.01
        val = self.val_noise.gather(1, k)[:, 0] * 0.01 - loss
        self.w = torch.where(live[:, None], self.w - lr[:, None] * diff, self.w)
        self.epoch_of += live
        return EpochValues(loss, val)

    def save_best(self, outcome):
        self.best_w = torch.where(outcome.improved[:, None], self.w, self.best_w)


def _run_blocks(models, n_slots, dtype, k):
    """Train every model through the slots, the host looking every k epochs."""
    pack = ToyPack(n_slots, dtype, k)
    queue = list(range(len(models)))
    holder = [-1] * n_slots
    curves = {j: [] for j in queue}
    vals = {j: [] for j in queue}
    results = {}
    while queue or any(h >= 0 for h in holder):
        for slot in range(n_slots):
            if holder[slot] < 0 and queue:
                holder[slot] = queue.pop(0)
                pack.admit(slot, models[holder[slot]], seed=holder[slot])
        pack.rule.run_block(pack.epoch, pack.n_train, after=pack.save_best)
        report = pack.rule.read()
        for slot, j in enumerate(holder):
            if j < 0:
                continue
            n = report.epochs_trained(slot)
            curves[j] += report.loss_history[:n, slot].tolist()
            vals[j] += report.val_history[:n, slot].tolist()
            if report.stop_epoch[slot] >= 0:
                results[j] = dict(
                    n_iter=int(report.n_iter[slot]),
                    reason=(
                        bool(report.converged[slot]),
                        bool(report.hit_max_iter[slot]),
                    ),
                    w=pack.w[slot].clone(),
                    best_w=pack.best_w[slot].clone(),
                    lr=float(report.learning_rate[slot]),
                )
                holder[slot] = -1
    for j, result in results.items():
        result["curve"] = np.array(curves[j])
        result["vals"] = np.array(vals[j])
    return results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_blocks_of_k_epochs_equal_looking_every_epoch(dtype):
    rng = np.random.default_rng(7)
    models = []
    for _ in range(40):
        m = _random_model(rng)
        m = replace(m, incremental=False, epochs_done=0)
        m = replace(m, hyper=replace(m.hyper, max_iter=int(rng.integers(1, 20))))
        if m.hyper.solver == "adam" or m.hyper.learning_rate_init < 1e-3:
            m = replace(m, hyper=replace(m.hyper, learning_rate_init=0.3))
        models.append(m)
    every_epoch = _run_blocks(models, 6, dtype, k=1)
    assert len(every_epoch) == len(models)
    # The K=1 run is the host rule's: fed its own curves, it stops where they end.
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    for j, r in every_epoch.items():
        pad = np.zeros(EPOCHS - len(r["curve"]))
        model = replace(
            models[j],
            state=ModelState(coefs=[], intercepts=[]),
            losses=np.concatenate([r["curve"], pad]),
            vals=np.concatenate([r["vals"], pad]),
        )
        assert len(_host_trace(model, np_dtype)) == r["n_iter"] == len(r["curve"])
    lowered = [
        r
        for j, r in every_epoch.items()
        if r["lr"] < models[j].hyper.learning_rate_init
    ]
    assert lowered, "no adaptive division: the learning rate plumbing is untested"
    for k in (3, 10):
        blocks = _run_blocks(models, 6, dtype, k=k)
        assert blocks.keys() == every_epoch.keys()
        for j, want in every_epoch.items():
            got = blocks[j]
            assert got["n_iter"] == want["n_iter"] and got["reason"] == want["reason"]
            np.testing.assert_array_equal(got["curve"], want["curve"])
            np.testing.assert_array_equal(got["vals"], want["vals"])
            assert torch.equal(got["w"], want["w"]), f"model {j}, K={k}"
            assert torch.equal(got["best_w"], want["best_w"])
            assert got["lr"] == want["lr"]


# -- no host reads ------------------------------------------------------------------
def _pack_of(n_slots, device, block_epochs=1):
    rng = np.random.default_rng(3)
    rule = SlotRule(n_slots, device, block_epochs=block_epochs)
    for slot in range(n_slots):
        _admit(rule, slot, _random_model(rng))
    return rule


def test_end_epoch_runs_on_meta_tensors():
    """Meta tensors hold no data: .item(), transfers, data-dependent shapes raise."""
    rule = _pack_of(24, "meta", block_epochs=10)
    meta = dict(device="meta")

    def epoch(live):
        w = torch.where(live, torch.zeros(24, **meta), torch.ones(24, **meta))
        return EpochValues(w * 2, w - 1, torch.zeros(24, dtype=torch.bool, **meta))

    saved = []
    rule.run_block(
        epoch, torch.zeros(24, dtype=torch.int64, **meta), after=saved.append
    )
    assert len(saved) == 10 and saved[-1].stopped.device.type == "meta"
    with pytest.raises((RuntimeError, NotImplementedError)):
        saved[-1].stopped.any().item()  # the meta check is real


class OpCensus(TorchDispatchMode):
    """Every ATen op, and every op that touches a tensor off the rule's device."""

    def __init__(self, device):
        super().__init__()
        self.device = torch.device(device)
        self.ops, self.off_device = [], []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.append(str(func.overloadpacket))
        leaves = [*args, *(kwargs or {}).values(), out]
        flat = torch.utils._pytree.tree_leaves(leaves)
        if any(isinstance(t, torch.Tensor) and t.device != self.device for t in flat):
            self.off_device.append(str(func))
        return out


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_end_epoch_issues_no_host_sync(device):
    rule = _pack_of(24, device)
    losses = (
        torch.rand(24, device=device)
        if device == "cpu"
        else torch.empty(24, device=device)
    )
    vals, n_train = losses * 2, torch.ones(24, dtype=torch.int64, device=device)
    with OpCensus(device) as census:
        rule.end_epoch(losses, vals, n_train)
    syncs = {"aten._local_scalar_dense", "aten.item", "aten.nonzero", "aten.is_nonzero"}
    syncs |= {"aten.masked_select", "aten.equal", "aten.allclose", "aten._to_copy"}
    assert not syncs & set(census.ops), census.ops
    assert census.off_device == []  # no copy between the host and the device
    # Small enough for a CUDA graph: one kernel per op, a few dozen per epoch.
    print(f"\nend_epoch, 24 slots: {len(census.ops)} ATen ops: {census.ops}")
    assert len(census.ops) <= 40


class OpSequence(TorchDispatchMode):
    """Each op's name and its outputs' shapes and dtypes, in order."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        leaves = torch.utils._pytree.tree_leaves(out)
        shapes = [(tuple(t.shape), t.dtype) for t in leaves if torch.is_tensor(t)]
        self.ops.append((str(func), shapes))
        return out


def test_a_block_issues_the_same_ops_whatever_the_data():
    """What a CUDA graph needs: the op sequence does not depend on who stops when."""
    sequences, stops = [], []
    for seed in (0, 1):
        rule = SlotRule(24, "cpu", block_epochs=10)
        hyper = Hyperparams(tol=1e-3, n_iter_no_change=1, max_iter=50)
        for slot in range(24):
            rule.admit(slot, hyper, ModelState(coefs=[], intercepts=[]))
        g = torch.Generator().manual_seed(seed)
        losses = torch.rand(10, 24, generator=g)
        losses[:, seed::3] = losses[0, seed::3]  # these plateau and stop early
        epochs = iter(losses)

        def epoch(live, epochs=epochs):
            loss = next(epochs)
            return EpochValues(loss, -loss)

        with OpSequence() as seen:
            rule.run_block(epoch, torch.full((24,), 50))
        sequences.append(seen.ops)
        stops.append(rule.read().stop_epoch)
    assert (stops[0] != stops[1]).any() and ((stops[0] >= 0) & (stops[0] < 9)).any()
    assert sequences[0] == sequences[1]
    assert not any("_local_scalar_dense" in name for name, _ in sequences[0])


@pytest.mark.cuda
def test_block_is_sync_free_and_replays_in_a_cuda_graph():
    rule = _pack_of(24, "cuda", block_epochs=10)
    losses = torch.linspace(2, 1, 24, device="cuda")
    n_train = torch.full((24,), 100, device="cuda")

    def epoch(live):
        return EpochValues(losses * 1.0, losses * -1.0)

    eager = _pack_of(24, "cuda", block_epochs=10)
    torch.cuda.set_sync_debug_mode("error")  # raises on any synchronising call
    try:
        eager.run_block(epoch, n_train)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=torch.cuda.Stream()):
        rule.run_block(epoch, n_train)
    # capture did not run the block: reset the rule to its admitted state, replay
    fresh = _pack_of(24, "cuda", block_epochs=10)
    rule._table.copy_(fresh._table)
    rule._flags.copy_(fresh._flags)
    graph.replay()
    torch.testing.assert_close(
        rule._table, eager._table, rtol=0, atol=0, equal_nan=True
    )


# -- bad input ----------------------------------------------------------------------
def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="n_slots"):
        SlotRule(0, "cpu")
    with pytest.raises(ValueError, match="block_epochs"):
        SlotRule(2, "cpu", block_epochs=0)
    rule = SlotRule(2, "cpu")
    with pytest.raises(ValueError, match="slot"):
        rule.release(2)
    with pytest.raises(ValueError, match="losses"):
        rule.end_epoch(torch.zeros(3), None, torch.zeros(2))
    with pytest.raises(ValueError, match="epochs"):
        rule.run_block(
            lambda live: EpochValues(torch.zeros(2)), torch.zeros(2), epochs=2
        )
