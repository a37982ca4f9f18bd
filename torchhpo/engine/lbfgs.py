"""scikit-learn's ``lbfgs`` solver: SciPy's L-BFGS-B on the engine's loss and gradient.

L-BFGS-B is a sequential host-side algorithm, so lbfgs models train one at a time;
the loss and gradient are the engine's fused functions with a pack of one, so the
math is the same code as the stochastic solvers'.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.optimize
import torch

from . import functional as F
from .data import DeviceData
from .slot_init import initial_parameters
from .spec import ModelResult, ModelState, ModelTask


def _flatten(coefs, intercepts) -> np.ndarray:
    return np.hstack(
        [np.asarray(a, dtype=np.float64).ravel() for a in coefs + intercepts]
    )


def fit_lbfgs(data: DeviceData, task: ModelTask, verbose: bool = False) -> ModelResult:
    """Train one model with L-BFGS-B, as scikit-learn's ``_fit_lbfgs``.

    Parameters
    ----------
    data : DeviceData
    task : ModelTask
        A model whose ``hyper.solver == "lbfgs"``.
    verbose : bool
        Let SciPy print its iterations.

    Returns
    -------
    ModelResult
    """
    start_time = time.perf_counter()
    hyper = task.hyper
    layer_units = [data.X.shape[1], *hyper.hidden_layer_sizes, data.Y.shape[1]]
    seeds = torch.tensor([task.seed & 0x7FFFFFFFFFFFFFFF], device=data.device)
    states = [task.init] if task.init is not None else [ModelState([], [])]
    init_w, init_b = initial_parameters(seeds, [hyper], states, layer_units, data.dtype)
    coefs = [w[0] for w in init_w]
    biases = [b[0] for b in init_b]
    shapes = [tuple(c.shape) for c in coefs] + [(b.shape[1],) for b in biases]
    sizes = [int(np.prod(s)) for s in shapes]
    n_coefs = len(coefs)

    device, dtype = data.device, data.dtype
    rows = torch.as_tensor(task.train_index, dtype=torch.int64, device=device)
    x = data.X.index_select(0, rows).unsqueeze(0)
    y = data.Y.index_select(0, rows).unsqueeze(0)
    if data.sample_weight is not None:
        weight = data.sample_weight.index_select(0, rows).unsqueeze(0)
    else:
        weight = torch.ones(1, len(rows), dtype=dtype, device=device)
    denom = weight.sum(dim=1)
    alpha = torch.full((1, 1, 1), hyper.alpha, dtype=dtype, device=device)
    runs = [(0, 1, hyper.activation)]

    def unpack(flat: np.ndarray):
        parts = np.split(flat, np.cumsum(sizes)[:-1])
        tensors = [
            torch.as_tensor(p.reshape(s), dtype=dtype, device=device)
            for p, s in zip(parts, shapes, strict=True)
        ]
        ws = [t.unsqueeze(0) for t in tensors[:n_coefs]]
        bs = [t.view(1, 1, -1) for t in tensors[n_coefs:]]
        return ws, bs

    @torch.no_grad()
    def loss_grad(flat: np.ndarray):
        ws, bs = unpack(flat)
        acts = F.forward(x, ws, bs, runs, data.out_activation)
        loss = F.per_model_loss(
            acts[-1], y, weight, denom, data.loss, data.out_activation
        )
        loss = loss + 0.5 * hyper.alpha * F.squared_weight_sum(ws) / denom
        cg, ig = F.backward(acts, y, weight, denom, ws, alpha, runs)
        grad = _flatten(
            [g[0].cpu().numpy() for g in cg], [g[0, 0].cpu().numpy() for g in ig]
        )
        return float(loss.item()), grad

    x0 = _flatten(
        [c.cpu().numpy() for c in coefs], [b[0].cpu().numpy() for b in biases]
    )
    options = {"maxfun": hyper.max_fun, "maxiter": hyper.max_iter, "gtol": hyper.tol}
    res = scipy.optimize.minimize(
        loss_grad, x0, method="L-BFGS-B", jac=True, options=options
    )
    n_iter = min(res.nit, hyper.max_iter)
    message = None
    if res.status != 0:
        message = (
            f"lbfgs failed to converge after {n_iter} iteration(s) "
            f"(status={res.status}):\n{res.message}\n"
        )
        if n_iter == hyper.max_iter:
            message += (
                "\nIncrease the number of iterations to improve the convergence "
                f"(max_iter={hyper.max_iter})."
            )
        message += (
            "\nYou might also want to scale the data as shown in:\n"
            "    https://scikit-learn.org/stable/modules/preprocessing.html"
        )
    ws, bs = unpack(res.x)
    coefs_out = [w[0].cpu().numpy() for w in ws]
    intercepts_out = [b[0, 0].cpu().numpy() for b in bs]
    finite = all(np.isfinite(a).all() for a in coefs_out + intercepts_out)
    state = ModelState(coefs=coefs_out, intercepts=intercepts_out, best_loss=None)
    return ModelResult(
        state=state,
        n_iter=n_iter,
        loss=float(res.fun),
        hit_max_iter=res.status != 0,
        failure=None
        if finite
        else (
            "Solver produced non-finite parameter weights. The input data may "
            "contain large values and need to be preprocessed."
        ),
        fit_time=time.perf_counter() - start_time,
        convergence_message=message,
    )
