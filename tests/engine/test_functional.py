"""Each fused engine op against the unfused computation it replaces.

The reference is scikit-learn itself, run model by model: its
``BaseMultilayerPerceptron._backprop`` for the forward pass, the loss and the
gradients, its ``AdamOptimizer`` / ``SGDOptimizer`` for the updates, and its epoch
loop rules (``_update_no_improvement_count``, ``iteration_ends``,
``trigger_stopping``) for the convergence tracker. Everything runs in float64, so
the fused results must agree to rounding error.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.neural_network import MLPClassifier as SkMLPClassifier
from sklearn.neural_network import MLPRegressor as SkMLPRegressor
from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

from torchhpo.engine import Hyperparams, ModelState, OptimizerState
from torchhpo.engine import functional as F
from torchhpo.engine.convergence import ConvergenceTracker
from torchhpo.engine.optimizers import OptimizerHyper, adam_step_, sgd_step_

RTOL = 1e-10
ATOL = 1e-12

# Hidden activation per model of the stack: every activation, several runs of
# equal activations, as a pack lays them out.
MODEL_ACTIVATIONS = ["relu", "relu", "tanh", "logistic", "logistic", "identity", "tanh"]

# (output activation, loss, number of outputs, target kind)
OUTPUTS = [
    ("softmax", "log_loss", 4, "multiclass"),
    ("logistic", "log_loss", 1, "binary"),
    ("logistic", "log_loss", 3, "multilabel"),
    ("identity", "squared_error", 1, "regression"),
    ("identity", "squared_error", 2, "regression"),
    ("exp", "poisson", 2, "regression"),
]


def _runs(labels):
    runs, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            runs.append((start, i, labels[start]))
            start = i
    return runs


def _targets(rng, kind, n, k):
    if kind == "multiclass":
        return np.eye(k)[rng.randint(k, size=n)]
    if kind in ("binary", "multilabel"):
        return rng.randint(2, size=(n, k)).astype(float)
    if k == 2 and kind == "regression":
        return rng.poisson(2.0, size=(n, k)).astype(float)  # valid for both losses
    return rng.normal(size=(n, k))


def _sklearn_backprop(
    activation, out_activation, loss, alpha, coefs, intercepts, X, Y, sw
):
    """Return scikit-learn's (loss, activations, coef_grads, intercept_grads)."""
    if loss == "log_loss":
        est = SkMLPClassifier(activation=activation, alpha=alpha)
    else:
        est = SkMLPRegressor(loss=loss, activation=activation, alpha=alpha)
    est.coefs_ = [c.copy() for c in coefs]
    est.intercepts_ = [b.copy() for b in intercepts]
    est.n_layers_ = len(coefs) + 1
    est.out_activation_ = out_activation
    n_layers = len(coefs)
    activations = [X] + [None] * n_layers
    deltas = [None] * n_layers
    coef_grads = [np.empty_like(c) for c in coefs]
    intercept_grads = [np.empty_like(b) for b in intercepts]
    value, coef_grads, intercept_grads = est._backprop(
        X, Y, sw, activations, deltas, coef_grads, intercept_grads
    )
    return value, activations, coef_grads, intercept_grads


def _stack(rng, layer_units, M, activations):
    weights, biases = [], []
    for fan_in, fan_out in itertools.pairwise(layer_units):
        w = np.empty((M, fan_in, fan_out))
        b = np.empty((M, 1, fan_out))
        for m, act in enumerate(activations):
            bound = np.sqrt((2.0 if act == "logistic" else 6.0) / (fan_in + fan_out))
            w[m] = rng.uniform(-bound, bound, (fan_in, fan_out)) * 2
            b[m] = rng.uniform(-bound, bound, (1, fan_out))
        weights.append(w)
        biases.append(b)
    return weights, biases


@pytest.mark.parametrize("hidden", [(6,), (7, 5)], ids=["1hidden", "2hidden"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("out_activation,loss,n_outputs,kind", OUTPUTS)
def test_forward_loss_backward_match_sklearn_backprop(
    out_activation, loss, n_outputs, kind, weighted, hidden
):
    rng = np.random.RandomState(len(hidden) * 100 + n_outputs * 10 + weighted)
    M = len(MODEL_ACTIVATIONS)
    n_features, width = 5, 23
    # Each model has its own number of real rows; the rest of its batch is padding
    # with zero weight, as in a pack whose models have different batch sizes.
    n_rows = rng.randint(8, width + 1, size=M)
    n_rows[0] = width
    layer_units = [n_features, *hidden, n_outputs]
    weights, biases = _stack(rng, layer_units, M, MODEL_ACTIVATIONS)
    alphas = rng.uniform(0, 0.5, size=M)
    alphas[1] = 0.0
    X = rng.normal(size=(M, width, n_features))
    Y = _targets(rng, kind, M * width, n_outputs).reshape(M, width, n_outputs)
    sw = rng.uniform(0.2, 3.0, size=(M, width)) if weighted else np.ones((M, width))
    valid = np.arange(width)[None, :] < n_rows[:, None]
    weight = np.where(valid, sw, 0.0)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))

    tw = [t(w) for w in weights]
    tb = [t(b) for b in biases]
    tweight = t(weight)
    denom = tweight.sum(dim=1)
    runs = _runs(MODEL_ACTIVATIONS)
    acts = F.forward(t(X), tw, tb, runs, out_activation)
    data_loss = F.per_model_loss(acts[-1], t(Y), tweight, denom, loss, out_activation)
    total_loss = data_loss + 0.5 * t(alphas) * F.squared_weight_sum(tw) / denom
    coef_grads, intercept_grads = F.backward(
        acts, t(Y), tweight, denom, tw, t(alphas).view(-1, 1, 1), runs
    )

    for m, act in enumerate(MODEL_ACTIVATIONS):
        n = n_rows[m]
        ref_loss, ref_acts, ref_cg, ref_ig = _sklearn_backprop(
            act,
            out_activation,
            loss,
            alphas[m],
            [w[m] for w in weights],
            [b[m, 0] for b in biases],
            X[m, :n],
            Y[m, :n],
            sw[m, :n] if weighted else None,
        )
        for layer, ref in enumerate(ref_acts[1:], start=1):
            np.testing.assert_allclose(
                acts[layer][m, :n].numpy(), ref, rtol=RTOL, atol=ATOL
            )
        np.testing.assert_allclose(total_loss[m].item(), ref_loss, rtol=RTOL, atol=ATOL)
        for got, ref in zip(coef_grads, ref_cg, strict=True):
            np.testing.assert_allclose(got[m].numpy(), ref, rtol=RTOL, atol=ATOL)
        for got, ref in zip(intercept_grads, ref_ig, strict=True):
            np.testing.assert_allclose(got[m, 0].numpy(), ref, rtol=RTOL, atol=ATOL)


def test_relu_derivative_zeroes_exactly_the_clamped_units():
    # Pre-activations of exactly zero (and below) are inactive in scikit-learn's rule.
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)
    w = torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]], dtype=torch.float64)
    b = torch.zeros(1, 1, 2, dtype=torch.float64)
    w2 = torch.tensor([[[0.5], [2.0]]], dtype=torch.float64)
    b2 = torch.zeros(1, 1, 1, dtype=torch.float64)
    y = torch.ones(1, 3, 1, dtype=torch.float64)
    weight = torch.ones(1, 3, dtype=torch.float64)
    alpha = torch.zeros(1, 1, 1, dtype=torch.float64)
    acts = F.forward(x, [w, w2], [b, b2], [(0, 1, "relu")], "identity")
    assert (acts[1] == 0).any()
    cg, ig = F.backward(
        acts, y, weight, weight.sum(1), [w, w2], alpha, [(0, 1, "relu")]
    )
    _, _, ref_cg, ref_ig = _sklearn_backprop(
        "relu",
        "identity",
        "squared_error",
        0.0,
        [w[0].numpy(), w2[0].numpy()],
        [b[0, 0].numpy(), b2[0, 0].numpy()],
        x[0].numpy(),
        y[0].numpy(),
        None,
    )
    for got, ref in zip(cg, ref_cg, strict=True):
        np.testing.assert_allclose(got[0].numpy(), ref, rtol=RTOL, atol=ATOL)
    for got, ref in zip(ig, ref_ig, strict=True):
        np.testing.assert_allclose(got[0, 0].numpy(), ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "out_activation,loss", [("exp", "poisson"), ("identity", "squared_error")]
)
def test_overflowing_padding_rows_leave_loss_and_gradients_unchanged(
    out_activation, loss
):
    # Zero-weight padding rows hold real inputs of other folds; where the output
    # overflows on them (inf), the model's loss and gradients must stay those of its
    # real rows, not NaN from inf * 0.
    rng = np.random.RandomState(0)
    n, width = 6, 9
    weights, biases = _stack(rng, [3, 4, 2], 1, ["identity"])
    X = rng.normal(size=(1, width, 3))
    X[0, n:] = 1e160 if loss == "squared_error" else 1e4
    Y = rng.poisson(1.0, size=(1, width, 2)).astype(float)
    weight = np.where(np.arange(width) < n, 1.0, 0.0)[None, :]
    tw = [torch.from_numpy(w) for w in weights]
    tb = [torch.from_numpy(b) for b in biases]
    tweight = torch.from_numpy(weight)
    denom = tweight.sum(dim=1)
    alpha = torch.full((1, 1, 1), 1e-3, dtype=torch.float64)
    acts = F.forward(torch.from_numpy(X), tw, tb, [(0, 1, "identity")], out_activation)
    assert not torch.isfinite(acts[-1][0, n:] ** 2).all()
    total = (
        F.per_model_loss(
            acts[-1], torch.from_numpy(Y), tweight, denom, loss, out_activation
        )
        + 0.5e-3 * F.squared_weight_sum(tw) / denom
    )
    cg, ig = F.backward(
        acts, torch.from_numpy(Y), tweight, denom, tw, alpha, [(0, 1, "identity")]
    )
    ref_loss, _, ref_cg, ref_ig = _sklearn_backprop(
        "identity",
        out_activation,
        loss,
        1e-3,
        [w[0] for w in weights],
        [b[0, 0] for b in biases],
        X[0, :n],
        Y[0, :n],
        None,
    )
    np.testing.assert_allclose(total[0].item(), ref_loss, rtol=RTOL, atol=ATOL)
    for got, ref in zip(cg, ref_cg, strict=True):
        np.testing.assert_allclose(got[0].numpy(), ref, rtol=RTOL, atol=ATOL)
    for got, ref in zip(ig, ref_ig, strict=True):
        np.testing.assert_allclose(got[0, 0].numpy(), ref, rtol=RTOL, atol=ATOL)


# -- optimizers ---------------------------------------------------------------------
def _param_stack(rng, M, shapes):
    return [torch.from_numpy(rng.normal(size=(M, *s))) for s in shapes]


def _sk_shape(p, i):
    """Model ``i``'s slice of a stacked parameter, in scikit-learn's shape."""
    return (p[i, 0] if p.shape[1] == 1 else p[i]).numpy().copy()


SHAPES = [(4, 3), (3, 2), (1, 3), (1, 2)]  # two coefs, then two intercepts


def _hyper(rng, M, **fixed):
    def f64(a):
        return torch.tensor(a, dtype=torch.float64)

    return OptimizerHyper(
        learning_rate=f64(fixed.get("lr", rng.uniform(1e-3, 0.3, M))),
        beta_1=f64(rng.uniform(0.5, 0.95, M)),
        beta_2=f64(rng.uniform(0.9, 0.9999, M)),
        epsilon=f64(10.0 ** rng.uniform(-9, -3, M)),
        momentum=f64(rng.uniform(0.0, 0.99, M)),
        step=torch.zeros(M, dtype=torch.float64),
    )


@pytest.mark.parametrize("window", [(0, 6), (2, 5)], ids=["all", "slice"])
def test_adam_step_matches_sklearn_adam(window):
    rng = np.random.RandomState(0)
    M = 6
    start, stop = window
    params = _param_stack(rng, M, SHAPES)
    before = [p.clone() for p in params]
    first = [torch.zeros_like(p) for p in params]
    second = [torch.zeros_like(p) for p in params]
    hyper = _hyper(rng, M)
    refs = {
        m: AdamOptimizer(
            [_sk_shape(p, m) for p in params],
            learning_rate_init=hyper.learning_rate[m].item(),
            beta_1=hyper.beta_1[m].item(),
            beta_2=hyper.beta_2[m].item(),
            epsilon=hyper.epsilon[m].item(),
        )
        for m in range(start, stop)
    }
    ref_params = {m: [_sk_shape(p, m) for p in params] for m in refs}
    for _ in range(7):
        grads = _param_stack(rng, M, SHAPES)
        adam_step_(params, grads, first, second, hyper, start, stop)
        for m, opt in refs.items():
            opt.update_params(ref_params[m], [_sk_shape(g, m) for g in grads])
            for got, ref in zip(params, ref_params[m], strict=True):
                np.testing.assert_allclose(_sk_shape(got, m), ref, rtol=RTOL, atol=ATOL)
            assert hyper.step[m].item() == opt.t
    outside = [m for m in range(M) if not start <= m < stop]
    for m in outside:
        for got, old in zip(params, before, strict=True):
            assert torch.equal(got[m], old[m])
        assert hyper.step[m].item() == 0


@pytest.mark.parametrize("nesterov", [True, False], ids=["nesterov", "momentum"])
@pytest.mark.parametrize("window", [(0, 6), (1, 4)], ids=["all", "slice"])
def test_sgd_step_matches_sklearn_sgd(nesterov, window):
    rng = np.random.RandomState(1 + nesterov)
    M = 6
    start, stop = window
    params = _param_stack(rng, M, SHAPES)
    before = [p.clone() for p in params]
    velocity = [torch.zeros_like(p) for p in params]
    hyper = _hyper(rng, M)
    refs = {
        m: SGDOptimizer(
            [_sk_shape(p, m) for p in params],
            learning_rate_init=hyper.learning_rate[m].item(),
            lr_schedule="constant",
            momentum=hyper.momentum[m].item(),
            nesterov=nesterov,
        )
        for m in range(start, stop)
    }
    ref_params = {m: [_sk_shape(p, m) for p in params] for m in refs}
    for step in range(7):
        if step == 4:  # a schedule changed the rates between epochs
            hyper.learning_rate.mul_(torch.from_numpy(rng.uniform(0.1, 1.0, M)))
            for m, opt in refs.items():
                opt.learning_rate = hyper.learning_rate[m].item()
        grads = _param_stack(rng, M, SHAPES)
        sgd_step_(params, grads, velocity, hyper, start, stop, nesterov)
        for m, opt in refs.items():
            opt.update_params(ref_params[m], [_sk_shape(g, m) for g in grads])
            for got, ref in zip(params, ref_params[m], strict=True):
                np.testing.assert_allclose(_sk_shape(got, m), ref, rtol=RTOL, atol=ATOL)
            for got, ref in zip(velocity, opt.velocities, strict=True):
                np.testing.assert_allclose(_sk_shape(got, m), ref, rtol=RTOL, atol=ATOL)
    for m in (m for m in range(M) if not start <= m < stop):
        for got, old in zip(params, before, strict=True):
            assert torch.equal(got[m], old[m])


def test_optimizer_hyper_select_keeps_each_models_values():
    rng = np.random.RandomState(3)
    hyper = _hyper(rng, 5)
    hyper.step.copy_(torch.arange(5, dtype=torch.float64))
    index = torch.tensor([4, 1, 2])
    picked = hyper.select(index)
    for name in OptimizerHyper.__dataclass_fields__:
        assert torch.equal(getattr(picked, name), getattr(hyper, name)[index])


# -- convergence tracker ------------------------------------------------------------
def _sklearn_epochs(
    hyper: Hyperparams, losses, val_scores, n_train, state=None, incremental=False
):
    """Run scikit-learn's epoch-end rules on given losses; return per-epoch records.

    Uses scikit-learn's own ``_update_no_improvement_count`` and its optimizers'
    ``iteration_ends`` / ``trigger_stopping``, driven by synthetic losses and
    validation scores instead of training.
    """
    est = SkMLPClassifier(
        tol=hyper.tol,
        n_iter_no_change=hyper.n_iter_no_change,
        early_stopping=hyper.early_stopping,
    )
    scores = iter(val_scores)
    est._score = lambda X, y, sample_weight=None: next(scores)
    state = state or ModelState([], [])
    est.loss_curve_ = list(state.loss_curve)
    est._no_improvement_count = state.no_improvement_count
    est.coefs_, est.intercepts_ = [np.zeros(1)], []
    if hyper.early_stopping:
        est.validation_scores_ = []
        est.best_validation_score_ = (
            -np.inf
            if state.best_validation_score is None
            else state.best_validation_score
        )
        est.best_loss_ = None
    else:
        est.best_loss_ = np.inf if state.best_loss is None else state.best_loss
    if hyper.solver == "sgd":
        opt = SGDOptimizer(
            [np.zeros(1)],
            hyper.learning_rate_init,
            hyper.learning_rate,
            hyper.momentum,
            hyper.nesterovs_momentum,
            hyper.power_t,
        )
        if state.optimizer is not None:
            opt.learning_rate = state.optimizer.learning_rate
    else:
        opt = AdamOptimizer([np.zeros(1)], hyper.learning_rate_init)
    t = state.t
    records = []
    for epoch in range(hyper.max_iter):
        est.coefs_ = [np.array([float(epoch)])]
        t += n_train
        est.loss_curve_.append(losses[epoch])
        est._update_no_improvement_count(hyper.early_stopping, None, None, None)
        improved = (
            hyper.early_stopping
            and hasattr(est, "_best_coefs")
            and est._best_coefs[0][0] == epoch
        )
        opt.iteration_ends(t)
        converged = False
        if est._no_improvement_count > hyper.n_iter_no_change:
            if opt.trigger_stopping("", False):
                converged = True
            else:
                est._no_improvement_count = 0
        hit_max = not converged and not incremental and epoch + 1 == hyper.max_iter
        records.append(
            dict(
                converged=converged or incremental,
                hit_max=hit_max,
                improved=bool(improved),
                lr=opt.learning_rate if hyper.solver == "sgd" else None,
                count=est._no_improvement_count,
                best_loss=est.best_loss_,
                best_val=getattr(est, "best_validation_score_", None),
            )
        )
        if converged or incremental:
            break
    return records


def _loss_sequence(rng, n, kind):
    epochs = np.arange(n)
    if kind == "plateau":
        base = 1.0 / (1.0 + 0.5 * epochs)
        base[n // 3 :] = base[n // 3]
        return base + rng.normal(scale=1e-4, size=n)
    if kind == "noisy":
        return np.exp(-0.05 * epochs) + rng.normal(scale=0.02, size=n)
    if kind == "steady":
        return np.exp(-0.3 * epochs)
    return np.r_[np.exp(-0.2 * epochs[: n // 2]), np.full(n - n // 2, np.nan)]


def _val_sequence(rng, n):
    scores = np.minimum(
        1.0, np.round(rng.uniform(0.3, 0.7, n) + 0.01 * np.arange(n), 2)
    )
    scores[rng.uniform(size=n) < 0.05] = np.nan
    return scores


def _tracker_hypers():
    out = []
    for solver, schedule, es, tol, nic, lr0, kind in itertools.product(
        ["adam", "sgd"],
        ["constant", "invscaling", "adaptive"],
        [False, True],
        [1e-4, 1e-2],
        [1, 4],
        [1e-3, 2e-2],
        ["plateau", "noisy"],
    ):
        out.append(
            (
                Hyperparams(
                    solver=solver,
                    learning_rate=schedule,
                    early_stopping=es,
                    tol=tol,
                    n_iter_no_change=nic,
                    learning_rate_init=lr0,
                    power_t=0.25 if lr0 > 1e-2 else 0.5,
                    max_iter=60 if nic == 4 else 25,
                ),
                kind,
            )
        )
    out.append((Hyperparams(solver="sgd", max_iter=30), "steady"))
    out.append((Hyperparams(solver="adam", max_iter=30, tol=0.0), "nan"))
    return out


def test_convergence_tracker_matches_sklearn_loop_rules():
    rng = np.random.RandomState(0)
    cases = _tracker_hypers()
    hypers = [h for h, _ in cases]
    M = len(hypers)
    n_epochs = max(h.max_iter for h in hypers)
    losses = np.array([_loss_sequence(rng, n_epochs, kind) for _, kind in cases])
    vals = np.array([_val_sequence(rng, n_epochs) for _ in cases])
    n_train = rng.randint(50, 500, size=M)
    expected = [
        _sklearn_epochs(h, losses[m], vals[m], n_train[m]) for m, h in enumerate(hypers)
    ]
    # Sanity of the cases: they exercise every rule.
    last = [r[-1] for r in expected]
    assert any(r["converged"] for r in last) and any(r["hit_max"] for r in last)
    assert any(
        rec["lr"] is not None and rec["lr"] < h.learning_rate_init / 4.9
        for (h, _), recs in zip(cases, expected, strict=True)
        if h.learning_rate == "adaptive"
        for rec in recs
    )

    states = [ModelState([], []) for _ in hypers]
    tracker = ConvergenceTracker(hypers, states, np.zeros(M, dtype=bool))
    alive = np.arange(M)
    epoch = 0
    while len(alive):
        es = np.array([hypers[m].early_stopping for m in alive])
        outcome = tracker.end_epoch(
            losses[alive, epoch],
            np.where(es, vals[alive, epoch], np.nan),
            n_train[alive],
        )
        for slot, m in enumerate(alive):
            rec = expected[m][epoch]
            where = f"model {m} ({hypers[m]}), epoch {epoch + 1}"
            assert outcome.converged[slot] == rec["converged"], where
            assert outcome.hit_max_iter[slot] == rec["hit_max"], where
            assert outcome.improved[slot] == rec["improved"], where
            assert tracker.no_improvement[slot] == rec["count"], where
            assert tracker.n_iter[slot] == epoch + 1, where
            assert tracker.t[slot] == n_train[m] * (epoch + 1), where
            if rec["lr"] is not None:
                np.testing.assert_allclose(
                    tracker.learning_rate[slot], rec["lr"], rtol=1e-14, err_msg=where
                )
            if hypers[m].early_stopping:
                assert tracker.best_val[slot] == rec["best_val"], where
            else:
                assert tracker.best_loss[slot] == rec["best_loss"], where
        stopped = outcome.stopped
        for slot, m in enumerate(alive):
            assert bool(stopped[slot]) == (epoch + 1 == len(expected[m])), m
        keep = np.flatnonzero(~stopped)
        tracker.select(keep)
        alive = alive[keep]
        epoch += 1


def test_convergence_tracker_incremental_epoch_resumes_counters():
    # partial_fit: one epoch from resumed counters; an adaptive model one step from
    # the trigger lowers its rate instead of stopping, the others stop as usual.
    rng = np.random.RandomState(5)
    hypers = [
        Hyperparams(solver="sgd", learning_rate="adaptive", n_iter_no_change=2),
        Hyperparams(solver="sgd", learning_rate="invscaling", power_t=0.7),
        Hyperparams(solver="adam", n_iter_no_change=2),
        Hyperparams(solver="sgd", learning_rate="adaptive", learning_rate_init=1e-6),
    ]
    states = [
        ModelState(
            [],
            [],
            optimizer=OptimizerState(
                solver=h.solver,
                step=3,
                learning_rate=h.learning_rate_init * 0.5,
                first=[],
                second=None,
            ),
            t=int(rng.randint(100, 1000)),
            loss_curve=[0.9, 0.8],
            best_loss=0.5,
            no_improvement_count=2 if i != 1 else 0,
        )
        for i, h in enumerate(hypers)
    ]
    losses = np.array([0.6, 0.4, 0.7, 0.55])
    n_train = np.array([120, 80, 60, 40])
    tracker = ConvergenceTracker(hypers, states, np.ones(len(hypers), dtype=bool))
    outcome = tracker.end_epoch(losses, None, n_train)
    for m, h in enumerate(hypers):
        (rec,) = _sklearn_epochs(
            h, [losses[m]], [], n_train[m], state=states[m], incremental=True
        )
        assert outcome.converged[m] == rec["converged"]
        assert not outcome.hit_max_iter[m]
        assert tracker.no_improvement[m] == rec["count"]
        assert tracker.t[m] == states[m].t + n_train[m]
        if rec["lr"] is not None:
            np.testing.assert_allclose(tracker.learning_rate[m], rec["lr"], rtol=1e-14)
