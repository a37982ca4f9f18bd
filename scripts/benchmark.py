"""Benchmark torchhpo against scikit-learn on the same tasks, in one run.

Every measurement runs in a fresh Python process; torchhpo and scikit-learn runs
alternate (which one goes first alternates too) and the report gives medians and
time ratios (scikit-learn time / torchhpo time, so > 1 means torchhpo is faster).

Tasks
-----
single
    One ``fit`` of ``MLPClassifier(random_state=0)`` on standardized digits.
pack
    The seed grid's 8 configurations x 5 CV folds = 40 models: torchhpo's engine
    trains them as packs (one per architecture) against 40 sequential scikit-learn
    fits.
seed-grid
    The seed's ``GridSearchCV`` (standardized digits, cv=5,
    ``MLPClassifier(random_state=0)``): torchhpo against scikit-learn
    ``n_jobs=-1``; also per-candidate |delta mean_test_score|.
seed-random
    The seed's ``RandomizedSearchCV`` space with ``alpha ~ loguniform(1e-5, 1e-1)``,
    ``learning_rate_init ~ loguniform(1e-4, 1e-1)``, ``n_iter=20``,
    ``random_state=0``, cv=5, against scikit-learn ``n_jobs=-1``.
random-1000
    The same space with ``n_iter=1000`` (5,000 models): torchhpo alone (SPEC: under
    a minute on one modern GPU); not part of the default task list.
seed-halving
    ``HalvingRandomSearchCV(resource="max_iter", max_resources=200,
    min_resources="exhaust", factor=3, cv=5, random_state=0, n_candidates=100)``
    over the seed-random space: torchhpo (survivors continue training) against
    scikit-learn's ``HalvingRandomSearchCV`` (``n_jobs=-1``, retraining survivors)
    and against torchhpo's full ``RandomizedSearchCV`` over the same 100 candidates
    (``max_iter=200``); prints the iterations' resources, candidate counts and best
    scores of each.
seed-optuna, seed-optuna-pruned
    ``OptunaSearchCV`` on standardized digits, ``MLPClassifier(hidden_layer_sizes=
    (100,), random_state=0)``, space: log-uniform ``alpha`` and
    ``learning_rate_init``, ``activation``, ``solver``; ``n_trials=20``, cv=5, a
    seeded TPE sampler and ``MedianPruner``; without and with
    ``enable_pruning`` (``max_iter`` partial_fit epochs, default 200). torchhpo
    against ``optuna_integration.OptunaSearchCV`` with scikit-learn's MLP at its
    best ``n_jobs`` (1: threads only add GIL contention); reports best scores,
    pruned trials and the model-epochs pruning saved. Not in the default list.
optuna-100, optuna-200
    ``seed-optuna-pruned`` with ``n_trials=100`` / ``200``: torchhpo alone.
random-es-1000
    ``random-1000`` with ``early_stopping=True``: 5,000 models that stop at widely
    different epochs; torchhpo alone.

``--baseline PATH`` runs every task with torchhpo against the torchhpo of another
checkout (PATH is put first on ``PYTHONPATH``), alternating, and prints the
baseline's time over this one's.

Usage
-----
``python scripts/benchmark.py [--tasks single,pack,seed-grid,seed-random]
[--repeats 3] [--device cpu]``; the Optuna tasks:
``python scripts/benchmark.py --tasks seed-optuna,seed-optuna-pruned,optuna-200``
(``--n-trials`` / ``--max-iter`` shrink them for a quick check).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

TASKS = ("single", "pack", "seed-grid", "seed-random", "seed-halving")
#: The implementations each task compares (default: torchhpo and scikit-learn;
#: "sklearn" is the reference implementation, optuna_integration for Optuna tasks).
TASK_IMPLS = {
    "random-1000": ("torchhpo",),
    "optuna-200": ("torchhpo",),
    "optuna-100": ("torchhpo",),
    "random-es-1000": ("torchhpo",),
    "seed-halving": ("torchhpo", "sklearn", "torchhpo-full"),
}
HALVING = dict(
    resource="max_iter",
    max_resources=200,
    min_resources="exhaust",
    factor=3,
    cv=5,
    random_state=0,
    n_candidates=100,
)
#: OptunaSearchCV tasks (torchhpo's against optuna_integration's).
OPTUNA_TASKS = ("seed-optuna", "seed-optuna-pruned", "optuna-100", "optuna-200")
#: optuna_integration's best n_jobs on a 2-core CPU (n_jobs=-1 measured slower).
OPTUNA_REF_N_JOBS = 1

SEED_GRID = {
    "hidden_layer_sizes": [(50, 50), (100,)],
    "activation": ["relu", "tanh"],
    "solver": ["adam", "sgd"],
}


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _seed_random_space():
    from scipy.stats import loguniform

    return {
        "hidden_layer_sizes": [(50, 50), (100,)],
        "activation": ["relu", "tanh"],
        "solver": ["adam", "sgd"],
        "alpha": loguniform(1e-5, 1e-1),
        "learning_rate_init": loguniform(1e-4, 1e-1),
    }


def _run_single(impl: str, device: str) -> dict:
    X, y = _digits()
    if impl == "torchhpo":
        from torchhpo import MLPClassifier

        model = MLPClassifier(random_state=0, device=device)
    else:
        from sklearn.neural_network import MLPClassifier

        model = MLPClassifier(random_state=0)
    start = time.perf_counter()
    model.fit(X, y)
    return {"seconds": time.perf_counter() - start, "n_iter": model.n_iter_}


def _run_pack(impl: str, device: str) -> dict:
    from sklearn.base import clone
    from sklearn.model_selection import ParameterGrid, StratifiedKFold

    X, y = _digits()
    splits = list(StratifiedKFold(5).split(X, y))
    grid = list(ParameterGrid(SEED_GRID))
    start = time.perf_counter()
    if impl == "torchhpo":
        from torchhpo import MLPClassifier
        from torchhpo.engine import train_models

        base = MLPClassifier(random_state=0, device=device)
        Y = base.encode_targets(y)
        tasks = [
            clone(base).set_params(**p)._build_task(Y, train)
            for p in grid
            for train, _ in splits
        ]
        data = base._device_data(X, Y, None)
        results = train_models(data, tasks)
        epochs = sum(r.n_iter for r in results)
    else:
        from sklearn.neural_network import MLPClassifier

        epochs = 0
        for p in grid:
            for train, _ in splits:
                model = MLPClassifier(random_state=0, **p).fit(X[train], y[train])
                epochs += model.n_iter_
    return {"seconds": time.perf_counter() - start, "epochs": epochs}


def _run_halving(impl: str, device: str) -> dict:
    X, y = _digits()
    if impl == "sklearn":
        from sklearn.experimental import enable_halving_search_cv  # noqa: F401
        from sklearn.model_selection import HalvingRandomSearchCV, ParameterSampler
        from sklearn.neural_network import MLPClassifier

        search = HalvingRandomSearchCV(
            MLPClassifier(random_state=0), _seed_random_space(), n_jobs=-1, **HALVING
        )
    else:
        from sklearn.model_selection import ParameterSampler

        import torchhpo

        options = {"device": device, "progress": False}
        if impl == "torchhpo":
            search = torchhpo.HalvingRandomSearchCV(
                torchhpo.MLPClassifier(random_state=0),
                _seed_random_space(),
                **HALVING,
                **options,
            )
        else:  # the full search over the same candidates, to max_resources epochs
            candidates = list(
                ParameterSampler(
                    _seed_random_space(),
                    HALVING["n_candidates"],
                    random_state=HALVING["random_state"],
                )
            )
            search = torchhpo.GridSearchCV(
                torchhpo.MLPClassifier(random_state=0, max_iter=200),
                [{k: [v] for k, v in c.items()} for c in candidates],
                cv=HALVING["cv"],
                **options,
            )
    start = time.perf_counter()
    search.fit(X, y)
    seconds = time.perf_counter() - start
    out = {"seconds": seconds, "best_score": float(search.best_score_)}
    if hasattr(search, "n_resources_"):
        out.update(
            n_resources=[int(r) for r in search.n_resources_],
            n_candidates=[int(c) for c in search.n_candidates_],
        )
    return out


def _run_search(impl: str, device: str, kind: str) -> dict:
    X, y = _digits()
    if impl == "torchhpo":
        from torchhpo import GridSearchCV, MLPClassifier, RandomizedSearchCV

        extra = {"device": device, "progress": False}
    else:
        from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
        from sklearn.neural_network import MLPClassifier

        extra = {"n_jobs": -1}
    model = MLPClassifier(random_state=0)
    if kind == "random-1000":
        search = RandomizedSearchCV(
            model, _seed_random_space(), cv=5, n_iter=1000, random_state=0, **extra
        )
    elif kind == "random-es-1000":
        model.set_params(early_stopping=True)
        search = RandomizedSearchCV(
            model, _seed_random_space(), cv=5, n_iter=1000, random_state=0, **extra
        )
    elif kind == "seed-grid":
        search = GridSearchCV(model, SEED_GRID, cv=5, **extra)
    else:
        search = RandomizedSearchCV(
            model, _seed_random_space(), cv=5, n_iter=20, random_state=0, **extra
        )
    start = time.perf_counter()
    search.fit(X, y)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "mean_test_score": [float(v) for v in search.cv_results_["mean_test_score"]],
        "params": [repr(p) for p in search.cv_results_["params"]],
        "best_score": float(search.best_score_),
    }


def _optuna_space():
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    return {
        "alpha": FloatDistribution(1e-5, 1e-1, log=True),
        "learning_rate_init": FloatDistribution(1e-4, 1e-1, log=True),
        "activation": CategoricalDistribution(["relu", "tanh"]),
        "solver": CategoricalDistribution(["adam", "sgd"]),
    }


def _run_optuna(impl: str, device: str, task: str, n_trials, max_iter) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    X, y = _digits()
    pruning = task != "seed-optuna"
    if n_trials is None:
        n_trials = {"optuna-200": 200, "optuna-100": 100}.get(task, 20)
    if impl == "torchhpo":
        from torchhpo import MLPClassifier, OptunaSearchCV

        extra = {"device": device, "progress": False}
    else:
        from optuna_integration import OptunaSearchCV
        from sklearn.neural_network import MLPClassifier

        extra = {"n_jobs": OPTUNA_REF_N_JOBS}
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(),
    )
    model = MLPClassifier(hidden_layer_sizes=(100,), random_state=0)
    if max_iter is not None:
        model.set_params(max_iter=max_iter)
    search = OptunaSearchCV(
        model,
        _optuna_space(),
        cv=5,
        n_trials=n_trials,
        study=study,
        enable_pruning=pruning,
        max_iter=max_iter or 200,
        **extra,
    )
    start = time.perf_counter()
    search.fit(X, y)
    seconds = time.perf_counter() - start
    pruned = [t for t in search.trials_ if t.state.name == "PRUNED"]
    epochs = search.max_iter
    saved = sum(search.n_splits_ * (epochs - (t.last_step + 1)) for t in pruned)
    return {
        "seconds": seconds,
        "best_score": float(search.best_score_),
        "n_trials": len(search.trials_),
        "n_pruned": len(pruned),
        "epochs_saved": saved if pruning else 0,
        "epochs_total": search.n_splits_ * epochs * len(search.trials_),
    }


def worker(task: str, impl: str, device: str, n_trials=None, max_iter=None) -> dict:
    """Run one measurement in this process and return its figures."""
    warnings.simplefilter("ignore")
    if task in OPTUNA_TASKS:
        return _run_optuna(impl, device, task, n_trials, max_iter)
    if task == "single":
        return _run_single(impl, device)
    if task == "pack":
        return _run_pack(impl, device)
    if task == "seed-halving":
        return _run_halving(impl, device)
    return _run_search(impl, device, task)


#: ``--baseline PATH``: a checkout of an earlier torchhpo, run as the "baseline"
#: implementation (this script's torchhpo tasks with that checkout's package).
BASELINE: str | None = None


def _measure(task: str, impl: str, device: str, n_trials=None, max_iter=None) -> dict:
    env = None
    if impl == "baseline":
        impl, env = "torchhpo", {**os.environ, "PYTHONPATH": BASELINE}
    cmd = [sys.executable, __file__, "--worker", task, impl, "--device", device]
    if n_trials is not None:
        cmd += ["--n-trials", str(n_trials)]
    if max_iter is not None:
        cmd += ["--max-iter", str(max_iter)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{task}/{impl} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [
                line.split(":", 1)[1].strip() for line in f if "model name" in line
            ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}"


def main(argv=None) -> int:
    """Run the benchmark and print a table of medians and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--tasks",
        default=",".join(TASKS),
        help=(
            "comma-separated tasks to run (default: %(default)s; also random-1000, "
            "seed-optuna, seed-optuna-pruned, optuna-200)"
        ),
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="fresh-process runs of each (task, implementation); medians (3)",
    )
    parser.add_argument(
        "--device", default="cpu", help="torchhpo's device: cpu, cuda, cuda:N (cpu)"
    )
    parser.add_argument(
        "--worker",
        nargs=2,
        metavar=("TASK", "IMPL"),
        help="internal: run one measurement in this process and print it as JSON",
    )
    parser.add_argument(
        "--n-trials", type=int, help="Optuna tasks: trials (default 20 / 200)"
    )
    parser.add_argument(
        "--max-iter", type=int, help="Optuna tasks: epochs per model (default 200)"
    )
    parser.add_argument(
        "--baseline",
        metavar="PATH",
        help="compare with the torchhpo of the checkout at PATH instead of the "
        "reference implementations",
    )
    args = parser.parse_args(argv)
    global BASELINE
    BASELINE = args.baseline
    if args.worker:
        figures = worker(*args.worker, args.device, args.n_trials, args.max_iter)
        print(json.dumps(figures))
        return 0

    import sklearn

    print(f"machine: {_machine()}; scikit-learn {sklearn.__version__}")
    print(
        f"date: {time.strftime('%Y-%m-%d')}; repeats: {args.repeats}; "
        f"device: {args.device}"
    )
    rows = []
    for task in args.tasks.split(","):
        impls = TASK_IMPLS.get(task, ("torchhpo", "sklearn"))
        if BASELINE:
            impls = ("torchhpo", "baseline")
        runs: dict[str, list[dict]] = {impl: [] for impl in impls}
        for r in range(args.repeats):
            # Alternate who goes first: rotate the order every repeat.
            order = impls[r % len(impls) :] + impls[: r % len(impls)]
            for impl in order:
                runs[impl].append(
                    _measure(task, impl, args.device, args.n_trials, args.max_iter)
                )
        t_ours = statistics.median(m["seconds"] for m in runs["torchhpo"])
        if BASELINE:
            _print_baseline(task, runs)
            continue
        if task in OPTUNA_TASKS:
            _print_optuna(task, runs)
            continue
        if len(impls) == 1:
            print(f"{task:<12} torchhpo {t_ours:8.2f} s   (scikit-learn not run)")
            continue
        if task == "seed-halving":
            _print_halving(runs)
            continue
        t_sk = statistics.median(m["seconds"] for m in runs["sklearn"])
        row = {
            "task": task,
            "torchhpo_s": t_ours,
            "sklearn_s": t_sk,
            "ratio": t_sk / t_ours,
        }
        if "mean_test_score" in runs["torchhpo"][0]:
            ours, theirs = runs["torchhpo"][0], runs["sklearn"][0]
            assert ours["params"] == theirs["params"], "candidates differ"
            deltas = [
                abs(a - b)
                for a, b in zip(
                    ours["mean_test_score"], theirs["mean_test_score"], strict=True
                )
            ]
            row["max_delta"] = max(deltas)
            row["mean_delta"] = sum(deltas) / len(deltas)
        rows.append(row)
        _print_row(row)
    return 0


def _print_halving(runs: dict[str, list[dict]]) -> None:
    """Print the halving comparison: wall-time ratios, iterations, best scores."""
    median = {
        impl: statistics.median(m["seconds"] for m in ms) for impl, ms in runs.items()
    }
    ours, theirs = runs["torchhpo"][0], runs["sklearn"][0]
    full = runs["torchhpo-full"][0]
    print(
        f"seed-halving torchhpo {median['torchhpo']:8.2f} s   scikit-learn halving "
        f"{median['sklearn']:8.2f} s   speed-up x"
        f"{median['sklearn'] / median['torchhpo']:.1f}   torchhpo full search "
        f"{median['torchhpo-full']:8.2f} s   speed-up x"
        f"{median['torchhpo-full'] / median['torchhpo']:.1f}",
        flush=True,
    )
    print(
        f"             iterations: torchhpo resources {ours['n_resources']} "
        f"candidates {ours['n_candidates']}; scikit-learn resources "
        f"{theirs['n_resources']} candidates {theirs['n_candidates']}",
        flush=True,
    )
    print(
        f"             best score: torchhpo {ours['best_score']:.4f}   scikit-learn "
        f"halving {theirs['best_score']:.4f} (delta "
        f"{ours['best_score'] - theirs['best_score']:+.4f})   torchhpo full "
        f"{full['best_score']:.4f}",
        flush=True,
    )


def _print_baseline(task: str, runs: dict) -> None:
    """Print this checkout's time against the baseline's, and both best scores."""
    t_ours = statistics.median(m["seconds"] for m in runs["torchhpo"])
    t_base = statistics.median(m["seconds"] for m in runs["baseline"])
    best = {
        impl: statistics.median(m["best_score"] for m in runs[impl]) for impl in runs
    }
    line = (
        f"{task:<19} torchhpo {t_ours:8.2f} s   baseline {t_base:8.2f} s   "
        f"speed-up x{t_base / t_ours:.2f}   best {best['torchhpo']:.4f} vs "
        f"{best['baseline']:.4f}"
    )
    if "n_pruned" in runs["torchhpo"][0]:
        for impl in ("torchhpo", "baseline"):
            m = runs[impl][0]
            line += f"   {impl} pruned {m['n_pruned']}/{m['n_trials']}"
    print(line, flush=True)


def _print_optuna(task: str, runs: dict) -> None:
    """Print an OptunaSearchCV row: times, ratio, best scores, pruning figures."""

    def summary(impl: str) -> str:
        ms = runs[impl]
        seconds = statistics.median(m["seconds"] for m in ms)
        best = statistics.median(m["best_score"] for m in ms)
        text = f"{impl} {seconds:8.2f} s best {best:.4f}"
        if task != "seed-optuna":
            pruned = statistics.median(m["n_pruned"] for m in ms)
            saved = statistics.median(m["epochs_saved"] for m in ms)
            total = ms[0]["epochs_total"]
            text += (
                f" pruned {pruned:g}/{ms[0]['n_trials']} trials,"
                f" saved {saved:g}/{total} model-epochs"
            )
        return text

    line = f"{task:<19} {summary('torchhpo')}"
    if runs.get("sklearn"):
        t_ours = statistics.median(m["seconds"] for m in runs["torchhpo"])
        t_ref = statistics.median(m["seconds"] for m in runs["sklearn"])
        delta = statistics.median(m["best_score"] for m in runs["torchhpo"]) - (
            statistics.median(m["best_score"] for m in runs["sklearn"])
        )
        line += (
            f"   optuna_integration: {summary('sklearn').split(' ', 1)[1]}"
            f"   speed-up x{t_ref / t_ours:.1f}   best-score delta {delta:+.4f}"
        )
    else:
        line += "   (optuna_integration not run)"
    print(line, flush=True)


def _print_row(row: dict) -> None:
    text = (
        f"{row['task']:<12} torchhpo {row['torchhpo_s']:8.2f} s   "
        f"scikit-learn {row['sklearn_s']:8.2f} s   speed-up x{row['ratio']:.1f}"
    )
    if "max_delta" in row:
        text += (
            f"   |delta mean_test_score| max {row['max_delta']:.4f} "
            f"mean {row['mean_delta']:.4f}"
        )
    print(text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
