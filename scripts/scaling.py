"""How search time grows with the number of candidates: torchhpo against scikit-learn.

One architecture (an MLP with one hidden layer of ``--hidden`` units) on
standardized digits, a ``RandomizedSearchCV`` of N candidates (activation, solver,
``alpha`` and ``learning_rate_init`` drawn with ``random_state=0``), ``--cv`` folds,
``max_iter=--max-iter``, ``refit=False``: the search's own time, for N in
``--sizes``. torchhpo trains all N x cv models of the architecture as packs;
scikit-learn fits them one by one with ``n_jobs=-1``. scikit-learn is skipped at
the sizes its time, extrapolated linearly from the previous size, would exceed
``--sklearn-budget`` seconds.

Every measurement runs in a fresh Python process (imports not timed). The report is
a table (seconds, seconds per candidate, the speed-up, and the growth exponent
``log(t2 / t1) / log(n2 / n1)`` between consecutive sizes: 1 is linear, below 1
sublinear) and a log-log PNG.

Usage
-----
``python scripts/scaling.py [--sizes 10,40,160,640] [--cv 3] [--max-iter 30]
[--hidden 64] [--device cpu] [--sklearn-budget 300] [--png runs/scaling.png]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path


def _search(impl: str, n_candidates: int, args) -> dict:
    """Build and run one search in this process; return its timing."""
    from scipy.stats import loguniform
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    space = {
        "activation": ["relu", "tanh"],
        "solver": ["adam", "sgd"],
        "alpha": loguniform(1e-5, 1e-1),
        "learning_rate_init": loguniform(1e-4, 1e-2),
    }
    options = dict(
        n_iter=n_candidates, cv=args.cv, random_state=0, refit=False, n_jobs=-1
    )
    mlp = dict(hidden_layer_sizes=(args.hidden,), max_iter=args.max_iter)
    if impl == "torchhpo":
        from torchhpo import MLPClassifier, RandomizedSearchCV

        search = RandomizedSearchCV(
            MLPClassifier(random_state=0, device=args.device, **mlp),
            space,
            progress=False,
            **options,
        )
    else:
        from sklearn.model_selection import RandomizedSearchCV
        from sklearn.neural_network import MLPClassifier

        search = RandomizedSearchCV(
            MLPClassifier(random_state=0, **mlp), space, **options
        )
    start = time.perf_counter()
    search.fit(X, y)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "best_score": float(search.cv_results_["mean_test_score"].max()),
    }


def _measure(impl: str, n_candidates: int, args) -> dict:
    """Run one measurement in a fresh process."""
    command = [
        sys.executable,
        __file__,
        "--worker",
        impl,
        str(n_candidates),
        "--cv",
        str(args.cv),
        "--max-iter",
        str(args.max_iter),
        "--hidden",
        str(args.hidden),
        "--device",
        args.device,
    ]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _exponent(sizes, times, i):
    if i == 0 or times[i] is None or times[i - 1] is None:
        return None
    return math.log(times[i] / times[i - 1]) / math.log(sizes[i] / sizes[i - 1])


def _table(sizes, ours, theirs, cv) -> str:
    header = (
        "| candidates | models | torchhpo s | s/candidate | growth | "
        "sklearn n_jobs=-1 s | growth | speed-up |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [header]
    for i, n in enumerate(sizes):
        t, s = ours[i], theirs[i]
        g_ours, g_theirs = _exponent(sizes, ours, i), _exponent(sizes, theirs, i)
        rows.append(
            f"| {n} | {n * cv} | {t:.2f} | {t / n:.3f} | "
            f"{'' if g_ours is None else f'{g_ours:.2f}'} | "
            f"{'skipped' if s is None else f'{s:.2f}'} | "
            f"{'' if g_theirs is None else f'{g_theirs:.2f}'} | "
            f"{'' if s is None else f'{s / t:.1f}x'} |"
        )
    return "\n".join(rows)


def _plot(path, sizes, ours, theirs, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.loglog(sizes, ours, "o-", label="torchhpo (fused packs)")
    done = [(n, s) for n, s in zip(sizes, theirs, strict=True) if s is not None]
    if done:
        ax.loglog(*zip(*done, strict=True), "s-", label="scikit-learn, n_jobs=-1")
    linear = [ours[0] * n / sizes[0] for n in sizes]
    ax.loglog(sizes, linear, ":", color="gray", label="linear from torchhpo's first")
    ax.set_xlabel("candidates")
    ax.set_ylabel("search time (s)")
    ax.set_title(
        f"RandomizedSearchCV, digits, one {args.hidden}-unit layer, cv={args.cv}, "
        f"max_iter={args.max_iter}, {args.device}",
        fontsize=9,
    )
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes",
        default="10,40,160,640",
        help="comma-separated numbers of candidates to time (%(default)s)",
    )
    parser.add_argument("--cv", type=int, default=3, help="CV folds per candidate (3)")
    parser.add_argument(
        "--max-iter", type=int, default=30, help="the MLP's max_iter (30)"
    )
    parser.add_argument(
        "--hidden", type=int, default=64, help="units of the one hidden layer (64)"
    )
    parser.add_argument(
        "--device", default="cpu", help="torchhpo's device: cpu, cuda, cuda:N (cpu)"
    )
    parser.add_argument(
        "--sklearn-budget",
        type=float,
        default=300.0,
        help=(
            "skip scikit-learn's run of a size whose estimated time exceeds this "
            "many seconds (300)"
        ),
    )
    parser.add_argument(
        "--png",
        default="runs/scaling.png",
        help="where to write the plot (%(default)s)",
    )
    parser.add_argument(
        "--worker", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)

    if args.worker:
        warnings.simplefilter("ignore")
        impl, n = args.worker
        print(json.dumps(_search(impl, int(n), args)))
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"# scaling: python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"device {args.device}, cv={args.cv}, max_iter={args.max_iter}, "
        f"hidden=({args.hidden},)",
        flush=True,
    )
    ours, theirs = [], []
    for i, n in enumerate(sizes):
        ours.append(_measure("torchhpo", n, args)["seconds"])
        print(f"torchhpo  {n:5d} candidates: {ours[-1]:8.2f} s", flush=True)
        previous = theirs[-1] if theirs else None
        estimate = previous * n / sizes[i - 1] if previous is not None else 0.0
        if i > 0 and (previous is None or estimate > args.sklearn_budget):
            theirs.append(None)
            print(f"sklearn   {n:5d} candidates: skipped (estimated > budget)")
            continue
        theirs.append(_measure("sklearn", n, args)["seconds"])
        print(f"sklearn   {n:5d} candidates: {theirs[-1]:8.2f} s", flush=True)
    print()
    print(_table(sizes, ours, theirs, args.cv))
    _plot(args.png, sizes, ours, theirs, args)
    print(f"\nplot written to {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
