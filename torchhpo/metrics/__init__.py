"""Scores of many models at once: scikit-learn's built-in metrics, batched on a device.

The search stage after training: :mod:`~torchhpo.metrics._batched` holds the metric
maths over padded batches of predictions and recognises the scikit-learn scorers it
can replace; the searches decide when to use it.
"""

from ._batched import METRICS, Predictions, compute, scorer_metric

__all__ = ["METRICS", "Predictions", "compute", "scorer_metric"]
