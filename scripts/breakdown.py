"""Where a search's time goes: train / score / refit / other, for the seed grid.

Runs the seed's ``GridSearchCV`` (standardized digits, ``MLPClassifier(
random_state=0)``, cv=5, 8 candidates) -- or the seed's random search with
``--n-iter N`` -- with timers around the search's stages, and prints each stage's
wall time and share of the whole ``fit``:

train
    ``FusedScheduler._train``: the engine's packs (forked CPU workers included).
score
    Scoring the trained models: scikit-learn's ``_fit_and_score`` per model
    (``replay_fit_and_score``) and the batched device scoring (``score_models``).
refit
    Training ``best_estimator_`` on all the data.
other
    Everything else: planning, data views, storing results, ``cv_results_``.

Wall times on a busy machine are noisy; the script also prints the process CPU time
(this process and its waited-for children, ``os.times``) so that shares can be
compared on a shared machine. Run it on a quiet machine for figures to publish.

Usage
-----
``PYTHONPATH=. python scripts/breakdown.py [--device cpu] [--repeats 1]
[--n-iter N] [--max-iter 200] [--host-scoring]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections import defaultdict
from contextlib import contextmanager

SEED_GRID = {
    "hidden_layer_sizes": [(50, 50), (100,)],
    "activation": ["relu", "tanh"],
    "solver": ["adam", "sgd"],
}


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Timers:
    """Accumulate wall and CPU seconds per stage, outermost calls only."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self._depth = 0

    def wrap(self, stage: str, func):
        """Return ``func`` timed under ``stage``."""

        def timed(*args, **kwargs):
            if self._depth:
                return func(*args, **kwargs)
            self._depth += 1
            wall, cpu = time.perf_counter(), _cpu()
            try:
                return func(*args, **kwargs)
            finally:
                self.wall[stage] += time.perf_counter() - wall
                self.cpu[stage] += _cpu() - cpu
                self._depth -= 1

        return timed


@contextmanager
def instrumented(timers: Timers):
    """Patch the search's stages with timers for the duration of the block."""
    from torchhpo.search import _scheduler, _sklearn_fit

    patches = [
        (_scheduler.FusedScheduler, "_train", "train"),
        (_scheduler, "replay_fit_and_score", "score"),
        (_scheduler, "score_models", "score"),
        (_sklearn_fit, "refit_estimator", "refit"),
    ]
    saved = []
    for owner, name, stage in patches:
        if hasattr(owner, name):
            original = getattr(owner, name)
            saved.append((owner, name, original))
            setattr(owner, name, timers.wrap(stage, original))
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


def run(
    device: str, n_iter: int | None, host_scoring: bool, max_iter: int = 200
) -> tuple[Timers, dict]:
    """Run the search once under timers; return them and the totals."""
    from scipy.stats import loguniform
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    from torchhpo import GridSearchCV, MLPClassifier, RandomizedSearchCV

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    model = MLPClassifier(random_state=0, max_iter=max_iter)
    options = {"device": device, "progress": False}
    if n_iter is None:
        search = GridSearchCV(model, SEED_GRID, cv=5, **options)
    else:
        space = {
            **SEED_GRID,
            "alpha": loguniform(1e-5, 1e-1),
            "learning_rate_init": loguniform(1e-4, 1e-1),
        }
        search = RandomizedSearchCV(
            model, space, n_iter=n_iter, cv=5, random_state=0, **options
        )
    if host_scoring:
        try:
            from torchhpo.search import _device_scoring
        except ImportError:  # before batched scoring: always scikit-learn's
            pass
        else:
            _device_scoring.ENABLED = False
    timers = Timers()
    with instrumented(timers), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wall, cpu = time.perf_counter(), _cpu()
        search.fit(X, y)
        totals = {"wall": time.perf_counter() - wall, "cpu": _cpu() - cpu}
    totals["models"] = len(search.cv_results_["params"]) * search.n_splits_
    return timers, totals


def report(timers: Timers, totals: dict) -> None:
    """Print the stages' seconds and shares, wall and CPU."""
    print(f"{'stage':<7} {'wall s':>8} {'share':>7} {'cpu s':>8} {'share':>7}")
    for stage in ("train", "score", "refit", "other"):
        if stage == "other":
            wall = totals["wall"] - sum(timers.wall.values())
            cpu = totals["cpu"] - sum(timers.cpu.values())
        else:
            wall, cpu = timers.wall[stage], timers.cpu[stage]
        print(
            f"{stage:<7} {wall:8.3f} {wall / totals['wall']:7.1%} "
            f"{cpu:8.3f} {cpu / max(totals['cpu'], 1e-9):7.1%}"
        )
    print(f"{'total':<7} {totals['wall']:8.3f} {'':>7} {totals['cpu']:8.3f}")
    per_model = timers.wall["score"] / totals["models"] * 1e3
    print(f"scoring: {per_model:.3f} ms per model ({totals['models']} models)")


def main(argv=None) -> int:
    """Run the breakdown and print it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--device", default="cpu", help="training device: cpu, cuda, cuda:N (cpu)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs of the search, one after another (1)",
    )
    parser.add_argument(
        "--n-iter",
        type=int,
        default=None,
        help="time a random search of N candidates (default: the seed grid)",
    )
    parser.add_argument(
        "--max-iter", type=int, default=200, help="the MLP's max_iter (short runs)"
    )
    parser.add_argument(
        "--host-scoring",
        action="store_true",
        help="score through scikit-learn model by model (the path before batching)",
    )
    args = parser.parse_args(argv)
    for r in range(args.repeats):
        timers, totals = run(args.device, args.n_iter, args.host_scoring, args.max_iter)
        print(f"-- run {r + 1}/{args.repeats}, device {args.device}")
        report(timers, totals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
