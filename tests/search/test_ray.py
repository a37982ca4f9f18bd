"""backend="ray" on a local two-node Ray cluster (CPU): the scores of the local
backend, packs on both nodes, and a node lost mid-search loses no model.

Skipped when Ray is not installed (``pip install -e ".[test,ray]"``).
"""

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import KFold
from sklearn.preprocessing import LabelBinarizer

# Keep every Ray process on the loopback address (Ray otherwise advertises the
# machine's network address); read when ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

import torchhpo.search._scheduler as scheduler_module  # noqa: E402
from torchhpo import GridSearchCV, MLPClassifier  # noqa: E402
from torchhpo.engine import (  # noqa: E402
    DeviceData,
    Hyperparams,
    ModelTask,
    train_models,
)
from torchhpo.engine.policy import EpochPolicy  # noqa: E402

from ._helpers import assert_same_scores  # noqa: E402

pytestmark = [
    pytest.mark.ray,
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]

# The pack hook below runs inside Ray workers, which cannot import this module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

N_PACKS = 6  # 12 models, packs of 2 (too few models to queue through slots)


def search(**options):
    return GridSearchCV(
        MLPClassifier(hidden_layer_sizes=(8,), random_state=0),
        {"alpha": [1e-4, 1e-2], "solver": ["adam", "sgd"], "max_iter": [4]},
        cv=3,
        progress=False,
        max_pack_size=2,
        **options,
    )


def mark_packs(directory, pause, device, n_models, epoch):
    """Pack hook: note each pack start with its node's id; slow every epoch."""
    if epoch is None:
        node = ray.get_runtime_context().get_node_id()
        Path(directory, f"{node}-{time.monotonic_ns()}").touch()
    time.sleep(pause)


@pytest.fixture(scope="module")
def cluster():
    """A head node and one worker node, one CPU each, this process connected."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def local_results(digits_small):
    return search(backend="local").fit(*digits_small).cv_results_


def hook_packs(monkeypatch, directory, pause):
    monkeypatch.setattr(
        scheduler_module,
        "train_models",
        partial(
            scheduler_module.train_models,
            pack_hook=partial(mark_packs, str(directory), pause),
        ),
    )


@pytest.mark.slow
def test_ray_backend_gives_the_scores_of_the_local_one(
    cluster, digits_small, local_results, tmp_path, monkeypatch
):
    hook_packs(monkeypatch, tmp_path, pause=0.05)
    distributed = search(backend="ray").fit(*digits_small)
    assert_same_scores(distributed.cv_results_, local_results)
    starts = [p.name.split("-")[0] for p in tmp_path.iterdir()]
    assert len(starts) == N_PACKS
    assert len(set(starts)) == 2  # both nodes trained packs


@pytest.mark.slow
def test_a_node_lost_mid_search_loses_no_model(
    cluster, digits_small, local_results, tmp_path, monkeypatch
):
    cluster, worker = cluster
    hook_packs(monkeypatch, tmp_path, pause=0.3)
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(search(backend="ray").fit, *digits_small)
        deadline = time.monotonic() + 120
        while not any(p.name.startswith(worker.node_id) for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline, "no pack started on the worker node"
            assert not running.done(), running.result()
            time.sleep(0.02)
        cluster.remove_node(worker)  # mid-pack: each pack sleeps 0.3 s per epoch
        cluster.add_node(num_cpus=1)
        distributed = running.result(timeout=300)
    assert_same_scores(distributed.cv_results_, local_results)
    starts = [p.name.split("-")[0] for p in tmp_path.iterdir()]
    assert len(starts) > N_PACKS  # the lost node's pack was trained again


class StopAtEpoch(EpochPolicy):
    """Stop model i once it has trained ``2 + i % 3`` epochs (models 0 mod 4 run on)."""

    needs_scores = True

    def __init__(self):
        self.asked = []

    def end_epoch(self, models, epochs, scores):
        assert scores is not None and len(scores) == len(models)
        self.asked.append(len(models))
        return (epochs >= 2 + models % 3) & (models % 4 != 0)


def _pruned_run(digits_small, backend):
    X, y = digits_small
    Y = LabelBinarizer().fit_transform(y).astype("float64")
    data = DeviceData.from_numpy(
        np.asarray(X, dtype="float64"), Y, target_kind="multiclass", loss="log_loss"
    )
    splits = list(KFold(3, shuffle=True, random_state=0).split(X))
    tasks = [
        ModelTask(
            hyper=Hyperparams(
                hidden_layer_sizes=(8,), max_iter=6, alpha=1e-4 * (i + 1)
            ),
            train_index=train,
            val_index=None,
            seed=i,
            score_index=test,
        )
        for i, (train, test) in enumerate(splits * 3)
    ]
    policy = StopAtEpoch()
    results = train_models(data, tasks, backend=backend, policy=policy, max_pack_size=3)
    return results, policy


@pytest.mark.slow
def test_a_policy_prunes_on_ray_as_on_local_threads(cluster, digits_small):
    """The driver's policy answers Ray tasks every epoch: the same models stop at
    the same epochs, with the weights of the local backend."""
    local, _ = _pruned_run(digits_small, "local")
    distributed, policy = _pruned_run(digits_small, "ray")
    assert policy.asked  # the tasks asked the driver
    for i, (a, b) in enumerate(zip(distributed, local, strict=True)):
        assert a.pruned == b.pruned == (i % 4 != 0)
        assert a.n_iter == b.n_iter
        for x, z in zip(a.state.coefs, b.state.coefs, strict=True):
            np.testing.assert_array_equal(x, z)


@pytest.mark.slow
def test_optuna_prunes_trials_on_ray(cluster, digits_small):
    import optuna

    from torchhpo import OptunaSearchCV

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    space = {"alpha": optuna.distributions.FloatDistribution(1e-5, 1e1, log=True)}
    OptunaSearchCV(
        MLPClassifier(hidden_layer_sizes=(8,), random_state=0),
        space,
        cv=3,
        n_trials=8,
        study=study,
        enable_pruning=True,
        max_iter=30,
        backend="ray",
        trials_per_batch=4,
        progress=False,
    ).fit(*digits_small)
    states = [t.state for t in study.trials]
    assert len(states) == 8
    assert optuna.trial.TrialState.PRUNED in states
