"""Keep each CV fold model's loss curve, recorded while the search scores it.

The search does not keep its (candidate, fold) models. scikit-learn calls the
scorer with each fitted fold model, though, so a scorer that wraps the configured
one can note the model's ``loss_curve_`` on the way: the curves of the very models
``cv_results_`` reports, with no extra training. The score itself is the wrapped
scorer's, unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import check_scoring
from sklearn.pipeline import Pipeline

from .._sklearn_compat import _safe_indexing


@dataclass(frozen=True)
class FoldCurve:
    """What one fold model left behind.

    Attributes
    ----------
    loss_curve : list of float
        Training loss per epoch (empty for ``lbfgs``, which keeps none).
    score : float
        Its test score on the fold.
    """

    loss_curve: list[float]
    score: float


def _fingerprint(X) -> str:
    if hasattr(X, "index"):  # a DataFrame's rows: its (unique) row labels
        X = np.asarray(X.index)
    return hashlib.blake2b(
        np.ascontiguousarray(X).tobytes(), digest_size=16
    ).hexdigest()


def _candidate_key(params: dict, names: list[str]) -> str:
    return repr(tuple(params[name] for name in names))


class LossCurveRecorder:
    """A scorer that scores as the configured one and records fold loss curves.

    Parameters
    ----------
    estimator : estimator
        The search's estimator (for ``scoring=None``: its ``score``).
    scoring : str or None
        The configured scorer name.
    X : ndarray
        The search's data.
    splits : list of (train, test)
        The search's folds, in order; a scored test set is matched to its fold.
    param_names : list of str
        The searched parameter names; a scored model is matched to its candidate
        by their values.
    """

    def __init__(self, estimator, scoring, X, splits, param_names: list[str]):
        self.scorer = check_scoring(estimator, scoring)
        self.param_names = list(param_names)
        self.folds = {
            _fingerprint(_safe_indexing(X, test)): k
            for k, (_, test) in enumerate(splits)
        }
        self.curves: dict[tuple[str, int], FoldCurve] = {}

    def __call__(self, estimator, X, y, **kwargs) -> float:
        score = self.scorer(estimator, X, y, **kwargs)
        fold = self.folds.get(_fingerprint(X))
        if fold is not None:
            mlp = estimator[-1] if isinstance(estimator, Pipeline) else estimator
            key = _candidate_key(estimator.get_params(), self.param_names)
            curve = [float(v) for v in getattr(mlp, "loss_curve_", None) or []]
            self.curves[(key, fold)] = FoldCurve(curve, float(score))
        return score

    def fold_curves(self, params: dict, n_splits: int) -> list[FoldCurve | None]:
        """Return the recorded curves of the candidate ``params``, one per fold.

        A fold whose fit failed (never scored) gives None.
        """
        key = _candidate_key(params, self.param_names)
        return [self.curves.get((key, k)) for k in range(n_splits)]
