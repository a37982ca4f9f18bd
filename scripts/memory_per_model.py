"""Peak memory per model: a torchhpo pack of M models against scikit-learn's MLP.

Each measurement runs in a fresh subprocess on synthetic data (64 features, 10
classes, ``--rows`` rows) with one wide hidden layer. The child warms up (imports,
kernel build, one tiny fit), reads its resident set, resets the kernel's
high-water mark (``/proc/self/clear_refs``), trains, and reports the peak resident
set above the baseline: everything the training held at its peak, whoever
allocated it (torch, the C kernels, NumPy). torchhpo's figure is the pack's peak
divided by M; scikit-learn's is one ``MLPClassifier.fit``.

Both torchhpo CPU paths are measured: the C kernels (``native``) and ATen
(``TORCHHPO_NATIVE=0``, the path CUDA runs). The planner's estimate
(:func:`torchhpo.engine.memory.task_bytes`) is printed beside each measurement.

Linux only (``/proc``). Example::

    python scripts/memory_per_model.py --width 100000 --models 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

N_FEATURES, N_CLASSES = 64, 10


def _data(rows: int, dtype: str):
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, N_FEATURES)).astype(dtype)
    y = rng.integers(0, N_CLASSES, rows)
    y[:N_CLASSES] = np.arange(N_CLASSES)  # every class present
    return X, y


def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current resident set


def _measure(fit) -> int:
    """Peak resident bytes above the baseline while ``fit()`` runs."""
    import gc

    gc.collect()
    base = _status("VmRSS")
    _reset_peak()
    fit()
    return _status("VmHWM") - base


def _child(args) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    X, y = _data(args.rows, args.dtype)
    params = dict(solver=args.solver, max_iter=args.max_iter, batch_size=args.batch)
    if args.lib == "sklearn":
        from sklearn.neural_network import MLPClassifier

        MLPClassifier(hidden_layer_sizes=(8,), **params).fit(X, y)  # warm up
        model = MLPClassifier(hidden_layer_sizes=(args.width,), **params)
        return {"peak": _measure(lambda: model.fit(X, y)), "models": 1}

    import numpy as np
    import torch

    from torchhpo.engine import DeviceData, Hyperparams, ModelTask, memory, train_models

    data = DeviceData.from_numpy(
        X,
        np.eye(N_CLASSES)[y],
        target_kind="multiclass",
        loss="log_loss",
        dtype=getattr(torch, args.dtype),
    )
    rows = np.arange(args.rows)

    def tasks(width: int) -> list:
        hyper = Hyperparams(hidden_layer_sizes=(width,), tol=0.0, **params)
        return [ModelTask(hyper, rows, seed=s) for s in range(args.models)]

    def train(width: int) -> None:
        train_models(data, tasks(width), max_pack_size=args.models, n_workers=1)

    train(8)  # warm up: kernels built, thread pools started
    peak = _measure(lambda: train(args.width))
    estimate = memory.task_bytes(data, tasks(args.width))
    return {"peak": peak, "models": args.models, "estimate": estimate}


def _run(lib: str, path: str, args, **extra) -> dict:
    command = [sys.executable, __file__, "--child", lib]
    for name in ("width", "rows", "batch", "max_iter", "models"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    command += ["--solver", extra["solver"], "--dtype", extra["dtype"]]
    env = dict(os.environ, TORCHHPO_NATIVE="0" if path == "aten" else "1")
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{lib} {path} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--width", type=int, default=100_000, help="hidden units (default 100000)"
    )
    parser.add_argument(
        "--rows", type=int, default=400, help="training rows (default 400)"
    )
    parser.add_argument(
        "--batch", type=int, default=200, help="batch size (default 200)"
    )
    parser.add_argument(
        "--max-iter", type=int, default=1, help="epochs per fit (default 1)"
    )
    parser.add_argument(
        "--models", type=int, default=4, help="models in torchhpo's pack (default 4)"
    )
    parser.add_argument(
        "--solvers", nargs="+", default=["adam", "sgd"], help="solvers to measure"
    )
    parser.add_argument(
        "--dtypes", nargs="+", default=["float32", "float64"], help="dtypes to measure"
    )
    parser.add_argument(
        "--paths",
        nargs="+",
        default=["native", "aten"],
        help="torchhpo step paths: native (C kernels), aten",
    )
    parser.add_argument(
        "--child",
        choices=["sklearn", "torchhpo"],
        help="internal: measure one fit in this process",
    )
    parser.add_argument("--solver", default="adam", help="internal: the child's solver")
    parser.add_argument(
        "--dtype", default="float32", help="internal: the child's dtype"
    )
    args = parser.parse_args()
    if args.child:
        args.lib = args.child
        print(json.dumps(_child(args)))
        return
    mib = 2**20
    print(
        f"width {args.width}, {N_FEATURES} features, {N_CLASSES} classes, "
        f"{args.rows} rows, batch {args.batch}, {args.models} models per pack"
    )
    print(
        f"{'solver':6} {'dtype':8} {'path':7} {'sklearn MiB':>11} "
        f"{'torchhpo MiB/model':>18} {'ratio':>6} {'estimate MiB':>12} {'est/meas':>8}"
    )
    for solver in args.solvers:
        for dtype in args.dtypes:
            sk = _run("sklearn", "-", args, solver=solver, dtype=dtype)["peak"]
            for path in args.paths:
                th = _run("torchhpo", path, args, solver=solver, dtype=dtype)
                per_model = th["peak"] / th["models"]
                print(
                    f"{solver:6} {dtype:8} {path:7} {sk / mib:11.1f} "
                    f"{per_model / mib:18.1f} {per_model / sk:6.2f} "
                    f"{th['estimate'] / mib:12.1f} {th['estimate'] / per_model:8.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
