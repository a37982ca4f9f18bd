"""Per-model scores of a pack, as scikit-learn's ``score`` computes them."""

import numpy as np
import torch

from torchhpo.engine import DeviceData
from torchhpo.engine.scores import ScoreRows


def test_a_model_with_nan_outputs_predicts_the_first_class():
    """scikit-learn's softmax turns a +inf output into NaNs, and ``argmax`` then
    picks the first class: a diverged classifier's accuracy is the share of class
    0 (so its early stopping goes on), not that of its largest output."""
    rng = np.random.RandomState(0)
    y = np.array([0, 1, 2, 1, 2, 2, 0, 1])
    data = DeviceData.from_numpy(
        rng.normal(size=(8, 3)),
        np.eye(3)[y],
        target_kind="multiclass",
        loss="log_loss",
        dtype=torch.float64,
    )
    rows = ScoreRows(data, [np.arange(8)] * 2)
    weights = [torch.zeros(2, 3, 3, dtype=torch.float64)]
    biases = [
        torch.tensor([[[0.0, 5.0, 1.0]], [[1.0, 5.0, np.inf]]], dtype=torch.float64)
    ]
    # One model with an overflowing output; no NaN anywhere before the softmax.
    scores = rows.scores(weights, biases, [(0, 2, "identity")])
    assert scores[0].item() == np.mean(y == 1)  # finite outputs: their argmax
    assert scores[1].item() == np.mean(y == 0)
