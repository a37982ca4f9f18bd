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

import pytest

# Keep every Ray process on the loopback address (Ray otherwise advertises the
# machine's network address); read when ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

import torchhpo.search._scheduler as scheduler_module  # noqa: E402
from torchhpo import GridSearchCV, MLPClassifier  # noqa: E402

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
