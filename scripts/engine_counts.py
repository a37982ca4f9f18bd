"""What a search asks of a device, counted on the CPU on the path CUDA runs.

For each search, prints the figures of :mod:`torchhpo.engine.instruments`:

occupancy
    Live slot-epochs over slot-epochs: how full the packs' slots stay.
launches/step
    ATen operations inside the step runners per pack step (``TORCHHPO_NATIVE=0``:
    the ATen step, whose every non-view operation is a kernel launch on CUDA),
    over the epochs that run the step's code (warm-ups and captures; a replayed
    epoch is one graph launch).
syncs/epoch
    Host-device synchronisations per pack epoch, over the whole search (scoring
    and bookkeeping included; on a CPU, host reads of host tensors count too, so
    this is an upper bound).
captures/pack
    Graph captures per pack, with :class:`~torchhpo.engine.cuda_graphs.RecordedEpoch`
    standing in for CUDA graphs (``--no-graphs``: eager epochs, no captures).

Searches: the seed grid on digits (``GridSearchCV``, 8 candidates, cv=5), an
Optuna search with ``MedianPruner`` (when optuna is installed) and a random search
with ``early_stopping=True``. Counting runs every ATen call through Python: expect
a search to take several times its usual time (``--max-iter`` shortens them; the
per-step and per-epoch figures do not depend on it).

``--occupancy`` measures occupancy, wall time and the model-epochs trained (live
slot-epochs: the work, which for a pruned Optuna search depends on the order trials
end in, so it varies between runs), on the CPU's own path (no op counting, so at
full speed), with the packs on worker threads of this process;
it adds the issue's two larger searches: ``optuna-100`` (100 pruned trials) and
``random-es-1000`` (1,000 candidates with ``early_stopping=True``: 5,000 models).

Usage
-----
``PYTHONPATH=. python scripts/engine_counts.py [--searches seed-grid,optuna-pruned,
early-stopping] [--max-iter N] [--no-graphs] [--block-epochs K] [--occupancy]``

``--block-epochs 10`` runs the loop CUDA runs (:mod:`torchhpo.engine.blocks`:
ten epochs and their stopping decisions per host look, models written into
freed slots in place) on the CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

if "--occupancy" not in sys.argv:
    os.environ["TORCHHPO_NATIVE"] = "0"  # the path CUDA runs, before torchhpo loads

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


def _model(max_iter):
    from torchhpo import MLPClassifier

    model = MLPClassifier(random_state=0)
    return model if max_iter is None else model.set_params(max_iter=max_iter)


def seed_grid(max_iter):
    from torchhpo import GridSearchCV

    return GridSearchCV(_model(max_iter), SEED_GRID, cv=5, progress=False)


def optuna_pruned(max_iter, n_trials=20):
    try:
        import optuna
        from optuna.distributions import CategoricalDistribution, FloatDistribution
    except ImportError:
        return None
    from torchhpo import OptunaSearchCV

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = {
        "alpha": FloatDistribution(1e-5, 1e-1, log=True),
        "learning_rate_init": FloatDistribution(1e-4, 1e-1, log=True),
        "activation": CategoricalDistribution(["relu", "tanh"]),
        "solver": CategoricalDistribution(["adam", "sgd"]),
    }
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(),
    )
    model = _model(max_iter).set_params(hidden_layer_sizes=(100,))
    return OptunaSearchCV(
        model, space, cv=5, n_trials=n_trials, study=study, enable_pruning=True,
        max_iter=max_iter or 200, progress=False,
    )  # fmt: skip


def early_stopping(max_iter, n_iter=40):
    from scipy.stats import loguniform

    from torchhpo import RandomizedSearchCV

    space = {
        "hidden_layer_sizes": [(50, 50), (100,)],
        "activation": ["relu", "tanh"],
        "solver": ["adam", "sgd"],
        "alpha": loguniform(1e-5, 1e-1),
        "learning_rate_init": loguniform(1e-4, 1e-1),
    }
    model = _model(max_iter).set_params(early_stopping=True)
    return RandomizedSearchCV(
        model, space, cv=5, n_iter=n_iter, random_state=0, progress=False
    )


SEARCHES = {
    "seed-grid": seed_grid,
    "optuna-pruned": optuna_pruned,
    "early-stopping": early_stopping,
}
LARGE = {
    "optuna-100": lambda max_iter: optuna_pruned(max_iter, n_trials=100),
    "random-es-1000": lambda max_iter: early_stopping(max_iter, n_iter=1000),
}


def occupancy(name: str, max_iter):
    """Run one search at full speed; return (occupancy, wall seconds, model-epochs
    trained) or None."""
    import time

    from torchhpo.engine.backends import local
    from torchhpo.engine.pack import Pack

    search = {**SEARCHES, **LARGE}[name](max_iter)
    if search is None:
        return None
    local.fork_usable = lambda devices: False  # threads: the packs stay here
    packs = []
    train = Pack.train

    def recording(self, *args, **kwargs):
        out = train(self, *args, **kwargs)
        packs.append(self)
        return out

    Pack.train = recording
    X, y = _digits()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X, y)
    seconds = time.perf_counter() - start
    Pack.train = train
    searched = packs[:-1]  # the last pack is the refit
    live = sum(p.live_epochs for p in searched)
    slots = sum(p.slot_epochs for p in searched)
    return live / max(slots, 1), seconds, live


def _count_slots_from_outside():
    """Record packs and slot-epochs where the pack does not report them itself."""
    from torchhpo.engine import instruments
    from torchhpo.engine.pack import Pack

    if getattr(Pack, "records_instruments", False):
        return
    init, run_epoch = Pack.__init__, Pack.run_epoch

    def counted_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.__dict__["_counted_slots"] = self.size
        instruments.record_pack()

    def counted_epoch(self, *args, **kwargs):
        result = run_epoch(self, *args, **kwargs)
        instruments.record_epoch(self.size, self.__dict__["_counted_slots"])
        return result

    Pack.__init__, Pack.run_epoch = counted_init, counted_epoch


def count(name: str, max_iter, graphs: bool):
    """Run one search under the instruments; return its counts (None: skipped)."""
    from torchhpo.engine import cuda_graphs, instruments
    from torchhpo.engine import pack as pack_module

    search = SEARCHES[name](max_iter)
    if search is None:
        return None
    if graphs:
        pack_module.epoch_runner = lambda kernel, device: cuda_graphs.RecordedEpoch(
            kernel
        )
    X, y = _digits()
    with warnings.catch_warnings(), instruments.measure() as measured:
        warnings.simplefilter("ignore")
        search.fit(X, y)
    return measured.snapshot()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--searches",
        default=",".join(SEARCHES),
        help="comma-separated searches to count (default: all)",
    )
    parser.add_argument(
        "--max-iter",
        type=int,
        default=None,
        help="epochs per model (shorter runs; per-step figures do not change)",
    )
    parser.add_argument(
        "--no-graphs",
        action="store_true",
        help="eager epochs instead of the recorded-graph stand-in",
    )
    parser.add_argument(
        "--block-epochs",
        type=int,
        default=None,
        help="epochs per host look K (the CUDA path's blocks; default: the "
        "device's, which on a CPU is 0, a host look every epoch)",
    )
    parser.add_argument(
        "--occupancy",
        action="store_true",
        help="occupancy and wall time only, at full speed on the CPU's own path",
    )
    args = parser.parse_args(argv)
    if args.block_epochs is not None:
        os.environ["TORCHHPO_BLOCK_EPOCHS"] = str(args.block_epochs)
    import torch

    if args.occupancy:
        print(f"{'search':<16}{'occupancy':>10}{'wall s':>9}{'model-epochs':>14}")
        for name in args.searches.split(","):
            got = occupancy(name, args.max_iter)
            if got is None:
                print(f"{name:<16}  skipped (optuna is not installed)")
                continue
            print(f"{name:<16}{got[0]:>10.3f}{got[1]:>9.2f}{got[2]:>14,}", flush=True)
        return 0

    torch.set_num_threads(1)  # one worker: every pack trains in this thread
    _count_slots_from_outside()
    header = (
        f"{'search':<16}{'occupancy':>10}{'launches/step':>15}"
        f"{'syncs/epoch':>13}{'captures/pack':>15}{'steps':>9}{'packs':>7}"
    )
    print(header)
    for name in args.searches.split(","):
        if name not in SEARCHES:
            parser.error(f"unknown search {name!r}; choose from {sorted(SEARCHES)}")
        c = count(name, args.max_iter, not args.no_graphs)
        if c is None:
            print(f"{name:<16}  skipped (optuna is not installed)")
            continue
        print(
            f"{name:<16}{c.occupancy:>10.2f}{c.launches_per_step:>15.1f}"
            f"{c.syncs_per_epoch:>13.1f}{c.captures_per_pack:>15.2f}"
            f"{c.steps:>9}{c.packs:>7}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
