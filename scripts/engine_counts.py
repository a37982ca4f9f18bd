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

Usage
-----
``PYTHONPATH=. python scripts/engine_counts.py [--searches seed-grid,optuna-pruned,
early-stopping] [--max-iter N] [--no-graphs]``
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

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


def optuna_pruned(max_iter):
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
        model, space, cv=5, n_trials=20, study=study, enable_pruning=True,
        max_iter=max_iter or 200, progress=False,
    )  # fmt: skip


def early_stopping(max_iter):
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
        model, space, cv=5, n_iter=40, random_state=0, progress=False
    )


SEARCHES = {
    "seed-grid": seed_grid,
    "optuna-pruned": optuna_pruned,
    "early-stopping": early_stopping,
}


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
    args = parser.parse_args(argv)
    import torch

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
