"""Comparisons of search results with scikit-learn's, shared by the search tests."""

import numpy as np
from numpy.ma import MaskedArray
from numpy.testing import assert_array_equal

import torchhpo.search._scheduler as scheduler_module


def score_keys(results):
    """Keys of cv_results_ that hold scores or ranks (not times, not params)."""
    return [k for k in results if "time" not in k and not k.startswith("param")]


def assert_same_structure(ours, theirs, same_params=True):
    """cv_results_ with the same keys, key order, types, dtypes (and parameters)."""
    assert list(ours) == list(theirs)
    for key, expected in theirs.items():
        got = ours[key]
        assert type(got) is type(expected), key
        if isinstance(expected, np.ndarray):
            assert got.dtype == expected.dtype, key
            assert got.shape == expected.shape, key
        if isinstance(expected, MaskedArray) and same_params:
            assert_array_equal(got.mask, expected.mask)
            for g, e, masked in zip(
                got.data, expected.data, expected.mask, strict=True
            ):
                if not masked:
                    assert g == e, key
    if same_params:
        assert ours["params"] == theirs["params"]


#: Batched device scoring sums in another order than scikit-learn's metrics: weighted
#: and continuous scores agree to float64 rounding (issue 10, point 4: 1e-12).
DEVICE_SCORING = {"rtol": 1e-12, "atol": 1e-15}


def assert_same_scores(ours, theirs, **tolerance):
    """Equal scores and ranks in every score key (NaN where scikit-learn has NaN)."""
    assert score_keys(ours) == score_keys(theirs)
    for key in score_keys(theirs):
        if tolerance:
            np.testing.assert_allclose(ours[key], theirs[key], **tolerance, err_msg=key)
        else:
            assert_array_equal(ours[key], theirs[key], err_msg=key)


class EngineSpy:
    """Record the scheduler's engine calls (tasks) and DeviceData transfers."""

    def __init__(self, monkeypatch):
        self.calls = []
        self.devices = []
        self.transfers = 0
        train_models = scheduler_module.train_models
        from_numpy = scheduler_module.DeviceData.from_numpy

        def spy_train(data, tasks, **kwargs):
            self.calls.append(list(tasks))
            self.devices.append(data.device)
            return train_models(data, tasks, **kwargs)

        def spy_from_numpy(*args, **kwargs):
            self.transfers += 1
            return from_numpy(*args, **kwargs)

        class SpyData:
            from_numpy = staticmethod(spy_from_numpy)

        monkeypatch.setattr(scheduler_module, "train_models", spy_train)
        monkeypatch.setattr(scheduler_module, "DeviceData", SpyData)

    @property
    def n_models(self):
        return sum(len(tasks) for tasks in self.calls)


def forbid_training(monkeypatch):
    """Make any engine call from the scheduler fail the test."""

    def fail(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(scheduler_module, "train_models", fail)
