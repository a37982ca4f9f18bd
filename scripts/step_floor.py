"""The engine's training step against its batched-matmul floor, per model-epoch.

For each of the seed grid's two architectures ((100,) and (50, 50) on standardized
digits: 64 features, 10 classes, batch 200, 5 stratified folds of ~1437 training
rows), a pack of ``--models`` models (the seed grid's mix: relu / tanh x adam / sgd,
each on every fold) is timed two ways, on one thread:

floor
    Only the batched matmuls of one training step at the pack's shapes: per layer
    the forward ``bmm`` (``a @ W``, no bias), the backward weight-gradient ``bmm``
    (``a.T @ delta``) and, for every layer but the first, the backward delta
    ``bmm`` (``delta @ W.T``), on plain contiguous tensors. Nothing else: no bias,
    activations, loss, gathers or optimizer. Times the pack's steps per epoch.
engine
    :meth:`torchhpo.engine.Pack.run_epoch` on the same pack: batch gathers, forward,
    loss, backward, optimizer updates and the epoch's bookkeeping.

Both are reported in milliseconds of one core's CPU time per model-epoch (thread
CPU time, median over ``--repeats`` interleaved measurements, so other processes on
a busy machine disturb it little), with their ratio. The matmul floor is what a
step would cost if everything but the matmuls were free.

Usage
-----
``python scripts/step_floor.py [--models 20] [--repeats 15] [--dtype float32]
[--threads 1]``
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

import numpy as np
import torch

ARCHITECTURES = ((100,), (50, 50))
BATCH = 200


def _digits() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Return standardized digits, one-hot targets and 5 stratified train folds."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    folds = [train for train, _ in StratifiedKFold(5).split(X, y)]
    return X, np.eye(10)[y], folds


def _pack(hidden: tuple[int, ...], n_models: int, dtype: torch.dtype):
    """Return an engine pack of the seed grid's configurations on digits."""
    from torchhpo.engine import DeviceData, Hyperparams, ModelTask, Pack

    X, Y, folds = _digits()
    data = DeviceData.from_numpy(
        X, Y, target_kind="multiclass", loss="log_loss", dtype=dtype
    )
    configs = [
        (activation, solver)
        for activation in ("relu", "tanh")
        for solver in ("adam", "sgd")
    ]
    tasks = []
    for k in range(n_models):
        activation, solver = configs[(k // len(folds)) % len(configs)]
        hyper = Hyperparams(
            hidden_layer_sizes=hidden,
            activation=activation,
            solver=solver,
            max_iter=10**6,
        )
        tasks.append(ModelTask(hyper, folds[k % len(folds)], seed=k))
    return Pack(data, tasks)


def _matmul_step(hidden: tuple[int, ...], n_models: int, dtype: torch.dtype):
    """Return a closure running one step's batched matmuls at the pack's shapes."""
    units = [64, *hidden, 10]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n_models, BATCH, units[0], generator=gen, dtype=dtype)
    weights = [
        torch.randn(n_models, a, b, generator=gen, dtype=dtype) * 0.1
        for a, b in itertools.pairwise(units)
    ]
    acts = [x] + [torch.empty(n_models, BATCH, b, dtype=dtype) for b in units[1:]]
    deltas = [torch.empty(n_models, BATCH, b, dtype=dtype) for b in units[:-1]]
    grads = [torch.empty_like(w) for w in weights]
    top = torch.randn(n_models, BATCH, units[-1], generator=gen, dtype=dtype)

    def step() -> None:
        for i, w in enumerate(weights):
            torch.bmm(acts[i], w, out=acts[i + 1])
        delta = top
        for i in range(len(weights) - 1, -1, -1):
            torch.bmm(acts[i].transpose(1, 2), delta, out=grads[i])
            if i > 0:
                torch.bmm(delta, weights[i].transpose(1, 2), out=deltas[i])
                delta = deltas[i]

    return step


def _cpu_time(fn, calls: int) -> float:
    """Return the thread CPU seconds of ``calls`` calls of ``fn``."""
    start = time.thread_time()
    for _ in range(calls):
        fn()
    return time.thread_time() - start


def measure(
    hidden: tuple[int, ...], n_models: int, repeats: int, dtype: torch.dtype
) -> dict:
    """Return floor and engine milliseconds per model-epoch for one architecture.

    Parameters
    ----------
    hidden : tuple of int
        Hidden layer sizes.
    n_models : int
        Models in the pack.
    repeats : int
        Interleaved measurements of each; medians are reported.
    dtype : torch.dtype
        Floating dtype of data and weights.

    Returns
    -------
    dict
        ``floor`` and ``engine`` (ms per model-epoch), ``ratio`` and ``steps``.
    """
    pack = _pack(hidden, n_models, dtype)
    steps = pack.n_steps
    matmuls = _matmul_step(hidden, n_models, dtype)
    for _ in range(3):  # warm up caches, allocator and lazy initialisation
        pack.run_epoch()
        _cpu_time(matmuls, steps)
    floor, engine = [], []
    for _ in range(repeats):
        floor.append(_cpu_time(matmuls, steps))
        engine.append(_cpu_time(pack.run_epoch, 1))
    per_model = 1e3 / n_models
    result = {
        "floor": statistics.median(floor) * per_model,
        "engine": statistics.median(engine) * per_model,
        "steps": steps,
    }
    result["ratio"] = result["engine"] / result["floor"]
    return result


def main(argv: list[str] | None = None) -> None:
    """Print the table: architecture, models, floor, engine, ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", type=int, default=20, help="models in the pack (20)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=15,
        help="interleaved measurements; medians (15)",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="the pack's dtype (float32)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: one core)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {args.dtype}, "
        f"batch {BATCH}, digits (64 features, 10 classes), "
        "CPU ms per model-epoch (median)"
    )
    print(
        f"{'architecture':<14}{'models':>7}{'steps':>7}{'floor':>9}{'engine':>9}"
        f"{'ratio':>8}"
    )
    for hidden in ARCHITECTURES:
        r = measure(hidden, args.models, args.repeats, dtype)
        print(
            f"{hidden!s:<14}{args.models:>7}{r['steps']:>7}{r['floor']:>9.3f}"
            f"{r['engine']:>9.3f}{r['ratio']:>7.2f}x"
        )


if __name__ == "__main__":
    main()
