"""Where a search's packs train never changes its cv_results_: several devices,
out-of-memory splits. Each test compares with a one-device run in the same test."""

from functools import partial

import pytest
import torch

import torchhpo.search._scheduler as scheduler_module
from torchhpo import GridSearchCV, MLPClassifier

from ._helpers import EngineSpy, assert_same_scores

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

GRID = {"alpha": [1e-4, 1e-2], "solver": ["adam", "sgd"], "max_iter": [4, 8]}


def search(**options):
    return GridSearchCV(
        MLPClassifier(hidden_layer_sizes=(8,), random_state=0),
        GRID,
        cv=3,
        progress=False,
        **options,
    )


@pytest.fixture(scope="module")
def one_device(digits_small):
    return search(device="cpu").fit(*digits_small)


def test_several_devices_give_the_scores_of_one(digits_small, monkeypatch, one_device):
    spy = EngineSpy(monkeypatch)
    spread = search(device=["cpu", "cpu"], max_pack_size=3).fit(*digits_small)
    assert_same_scores(spread.cv_results_, one_device.cv_results_)
    assert spy.transfers == 1  # the search hands the data over once
    assert spread.best_estimator_.device == "cpu"


def test_injected_out_of_memory_changes_no_score(digits_small, monkeypatch, one_device):
    sizes = []

    def out_of_memory(device, n_models, epoch):
        if epoch is None:
            sizes.append(n_models)
            if n_models > 4:
                raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    monkeypatch.setattr(
        scheduler_module,
        "train_models",
        partial(scheduler_module.train_models, pack_hook=out_of_memory),
    )
    split = search(device="cpu").fit(*digits_small)
    assert_same_scores(split.cv_results_, one_device.cv_results_)
    assert max(sizes) > 4  # big packs were tried, and split


@pytest.mark.parametrize(
    "device, message",
    [([], "at least one device"), (["cpu", "gpu:7"], "'gpu:7'")],
)
def test_bad_device_lists_fail_before_training(digits_small, device, message):
    with pytest.raises(ValueError, match=message):
        search(device=device).fit(*digits_small)
