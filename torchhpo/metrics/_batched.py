"""scikit-learn's built-in metrics for many models at once, on their device.

A search scores thousands of (candidate, fold) models; scikit-learn's scorers take
each one by one (~2.5 ms of Python per model on a CPU). Here the predictions of M
models, each over its own rows, are stacked into one padded :class:`Predictions`
batch, and each metric is a few tensor reductions over it, in float64, giving
scikit-learn's value for every model (to float64 rounding: sums run in another
order).

Every metric returns ``(scores, ok)``: ``ok`` is False for a model where
scikit-learn would not simply return a number -- it would warn (a zero division, a
class absent from ``y_true``), raise (one class only, non-finite predictions), or
need something not computed here. The caller scores those models through
scikit-learn itself, so that its values, warnings and errors stay scikit-learn's.

:func:`scorer_metric` recognises the scikit-learn scorer objects (from scorer
names, ``make_scorer`` of the same metrics, or ``scoring=None``) that have a batched
metric here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from sklearn import metrics as skm

from .._sklearn_compat import _PassthroughScorer, _Scorer

#: Target kinds of a batch (as the engine's, plus regression).
KINDS = ("binary", "multiclass", "multilabel", "regression")

_AVERAGES = ("binary", "micro", "macro", "weighted", "samples")


@dataclass
class Predictions:
    """Predictions of M models, each over its own rows, padded to n rows.

    Attributes
    ----------
    kind : {"binary", "multiclass", "multilabel", "regression"}
        The target kind (a classifier's ``classes_``: 2, or more, or indicators).
    y_true : Tensor
        ``(M, n)`` class indices into ``classes_`` (binary, multiclass),
        ``(M, n, L)`` bool indicators (multilabel) or ``(M, n, T)`` float64 targets
        (regression).
    y_pred : Tensor
        What ``predict`` returns, in the same form as ``y_true``.
    proba : Tensor or None
        ``(M, n, K)`` float64: ``predict_proba`` (classifiers), else None.
    weight : Tensor
        ``(M, n)`` float64: each row's sample weight (1 without sample weights),
        0 on padding rows.
    valid : Tensor
        ``(M, n)`` bool: False on padding rows.
    pos_index : int or None
        Index in ``classes_`` of ``pos_label=1`` (binary), None when absent.
    """

    kind: str
    y_true: torch.Tensor
    y_pred: torch.Tensor
    proba: torch.Tensor | None
    weight: torch.Tensor
    valid: torch.Tensor
    pos_index: int | None = None

    @property
    def n_classes(self) -> int:
        """K: classes (binary, multiclass) or labels (multilabel)."""
        if self.kind == "multilabel":
            return self.y_true.shape[-1]
        return 2 if self.kind == "binary" else self.proba.shape[-1]


Metric = Callable[[Predictions], tuple[torch.Tensor, torch.Tensor]]


def _mean(values: torch.Tensor, p: Predictions) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-model weighted mean over rows (scikit-learn's ``_average``)."""
    total = p.weight.sum(1)
    return (values * p.weight).sum(1) / total, total != 0


def _all_models(p: Predictions, value: bool) -> torch.Tensor:
    return torch.full((p.weight.shape[0],), value, device=p.weight.device)


def _fallback(p: Predictions) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros_like(p.weight[:, 0]), _all_models(p, False)


# -- classification ---------------------------------------------------------------
def accuracy(p: Predictions) -> tuple[torch.Tensor, torch.Tensor]:
    """``accuracy_score`` (subset accuracy for multilabel)."""
    if p.kind == "regression":
        return _fallback(p)
    equal = p.y_true == p.y_pred
    if p.kind == "multilabel":
        equal = equal.all(-1)
    return _mean(equal.double(), p)


def _counts(p: Predictions):
    """Weighted (tp, pred_sum, true_sum) per model and label, and the label set.

    The label set is scikit-learn's: the labels present in ``y_true`` or ``y_pred``
    (binary, multiclass), every indicator column (multilabel).
    """
    valid = p.valid.unsqueeze(-1)
    if p.kind == "multilabel":
        true, pred = p.y_true & valid, p.y_pred & valid
        labels = torch.ones(true.shape[0], true.shape[2], dtype=torch.bool)
        labels = labels.to(true.device)
    else:
        k = p.n_classes
        true = torch.nn.functional.one_hot(p.y_true, k).bool() & valid
        pred = torch.nn.functional.one_hot(p.y_pred, k).bool() & valid
        labels = true.any(1) | pred.any(1)
    w = p.weight.unsqueeze(-1)
    tp = ((true & pred) * w).sum(1)
    return tp, (pred * w).sum(1), (true * w).sum(1), labels


def _ratio(metric: str, tp, pred_sum, true_sum):
    """(numerator, denominator) of precision, recall or F1 (beta = 1)."""
    if metric == "precision":
        return tp, pred_sum
    if metric == "recall":
        return tp, true_sum
    return 2.0 * tp, 1.0 * true_sum + pred_sum


def _samplewise(p: Predictions, metric: str):
    """``average="samples"`` (multilabel): per-row ratios, weighted mean over rows."""
    w = p.weight
    tp = w * (p.y_true & p.y_pred).sum(-1)
    pred_sum, true_sum = w * p.y_pred.sum(-1), w * p.y_true.sum(-1)
    num, den = _ratio(metric, tp, pred_sum, true_sum)
    ok = ((den != 0) | ~p.valid).all(1)
    values = torch.where(p.valid & (den != 0), num / den.where(den != 0, 1.0), 0.0)
    score, ok_mean = _mean(values, p)
    return score, ok & ok_mean


def set_wise(metric: str, average: str) -> Metric:
    """Return ``precision_score`` / ``recall_score`` / ``f1_score`` with ``average``.

    ``pos_label=1`` and ``zero_division="warn"`` (scikit-learn's defaults); a model
    where any ratio divides by zero is not ok (scikit-learn warns there).
    """

    def score(p: Predictions) -> tuple[torch.Tensor, torch.Tensor]:
        if p.kind == "regression":
            return _fallback(p)
        if average == "samples":
            return _samplewise(p, metric) if p.kind == "multilabel" else _fallback(p)
        tp, pred_sum, true_sum, labels = _counts(p)
        if average == "binary":
            if p.kind != "binary" or p.pos_index is None:
                return _fallback(p)
            i = p.pos_index
            num, den = _ratio(metric, tp[:, i], pred_sum[:, i], true_sum[:, i])
            return num / den.where(den != 0, 1.0), den != 0
        if average == "micro":
            num, den = _ratio(metric, tp.sum(1), pred_sum.sum(1), true_sum.sum(1))
            return num / den.where(den != 0, 1.0), den != 0
        num, den = _ratio(metric, tp, pred_sum, true_sum)
        ok = ((den != 0) | ~labels).all(1)
        values = torch.where(labels & (den != 0), num / den.where(den != 0, 1.0), 0.0)
        if average == "macro":
            return values.sum(1) / labels.sum(1), ok
        support = true_sum * labels
        total = support.sum(1)
        return (values * support).sum(1) / total.where(total != 0, 1.0), ok & (
            total != 0
        )

    score.__name__ = f"{metric}_{average}"
    return score


def balanced_accuracy(p: Predictions) -> tuple[torch.Tensor, torch.Tensor]:
    """``balanced_accuracy_score`` (``adjusted=False``): mean recall over labels."""
    if p.kind not in ("binary", "multiclass"):
        return _fallback(p)
    tp, _, true_sum, labels = _counts(p)
    # A single label: scikit-learn's confusion matrix warns.
    ok = ((true_sum != 0) | ~labels).all(1) & (labels.sum(1) >= 2)
    nonzero = true_sum != 0
    recall = torch.where(labels & nonzero, tp / true_sum.where(nonzero, 1.0), 0.0)
    return recall.sum(1) / labels.sum(1), ok


def log_loss(p: Predictions) -> tuple[torch.Tensor, torch.Tensor]:
    """``log_loss``: probabilities clipped to ``[eps, 1 - eps]``, as scikit-learn.

    Ok only where the model's rows hold every class (scikit-learn infers the
    classes from ``y_true`` and raises when they differ from the columns).
    """
    if p.kind not in ("binary", "multiclass"):
        return _fallback(p)
    eps = torch.finfo(torch.float64).eps
    picked = p.proba.gather(2, p.y_true.unsqueeze(-1)).squeeze(-1)
    loss = -torch.log(picked.clamp(eps, 1 - eps))
    score, ok = _mean(torch.where(p.valid, loss, 0.0), p)
    present = torch.nn.functional.one_hot(p.y_true, p.n_classes).bool()
    present = (present & p.valid.unsqueeze(-1)).any(1).all(1)
    return score, ok & present


def roc_auc(p: Predictions) -> tuple[torch.Tensor, torch.Tensor]:
    """``roc_auc_score`` of a binary classifier: the trapezoids of its ROC curve.

    The positive class is ``classes_[1]``, its probability the score; ties share a
    threshold. Ok where both classes are present with positive total weight.
    """
    if p.kind != "binary":
        return _fallback(p)
    score = torch.where(p.valid, p.proba[..., 1], -torch.inf)
    score, order = torch.sort(score, dim=1, descending=True, stable=True)
    positive = p.y_true.gather(1, order).double()
    w = p.weight.gather(1, order)
    tps = torch.cumsum(w * positive, 1)
    fps = torch.cumsum(w * (1.0 - positive), 1)
    end = torch.ones_like(p.valid)
    end[:, :-1] = score[:, :-1] != score[:, 1:]
    n_pos, n_neg = tps[:, -1:], fps[:, -1:]
    ok = (n_pos[:, 0] > 0) & (n_neg[:, 0] > 0) & (p.weight >= 0).all(1)
    tpr = tps / n_pos.where(n_pos > 0, 1.0)
    fpr = fps / n_neg.where(n_neg > 0, 1.0)
    last_tpr = torch.cummax(torch.where(end, tpr, 0.0), 1).values
    last_fpr = torch.cummax(torch.where(end, fpr, 0.0), 1).values
    prev_tpr = torch.nn.functional.pad(last_tpr[:, :-1], (1, 0))
    prev_fpr = torch.nn.functional.pad(last_fpr[:, :-1], (1, 0))
    area = torch.where(end, (fpr - prev_fpr) * (tpr + prev_tpr) / 2.0, 0.0).sum(1)
    labels = torch.nn.functional.one_hot(p.y_true, 2).bool() & p.valid.unsqueeze(-1)
    return area, ok & labels.any(1).all(1)


# -- regression -------------------------------------------------------------------
def _per_output(values: torch.Tensor, p: Predictions):
    """Weighted mean over rows of ``(M, n, T)`` values: ``(M, T)``, and ok."""
    w = p.weight.unsqueeze(-1)
    total = w.sum(1)
    return (values * w).sum(1) / total, (total != 0).all(1)


def _regression_errors(
    p: Predictions, transform, root: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    if p.kind != "regression":
        return _fallback(p)
    errors, ok = _per_output(transform(p.y_true - p.y_pred), p)
    if root:
        errors = torch.sqrt(errors)
    return errors.mean(1), ok


def mean_squared_error(p: Predictions) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean_squared_error`` (outputs averaged uniformly)."""
    return _regression_errors(p, torch.square)


def root_mean_squared_error(p: Predictions) -> tuple[torch.Tensor, torch.Tensor]:
    """``root_mean_squared_error`` (the root per output, then the mean)."""
    return _regression_errors(p, torch.square, root=True)


def mean_absolute_error(p: Predictions) -> tuple[torch.Tensor, torch.Tensor]:
    """``mean_absolute_error`` (outputs averaged uniformly)."""
    return _regression_errors(p, torch.abs)


def r2(p: Predictions) -> tuple[torch.Tensor, torch.Tensor]:
    """``r2_score`` with ``force_finite=True``; not ok with fewer than 2 rows."""
    if p.kind != "regression":
        return _fallback(p)
    w = p.weight.unsqueeze(-1)
    numerator = (w * (p.y_true - p.y_pred) ** 2).sum(1)
    mean, ok = _per_output(p.y_true, p)
    denominator = (w * (p.y_true - mean.unsqueeze(1)) ** 2).sum(1)
    safe = torch.where(denominator != 0, denominator, 1.0)
    scores = torch.where(
        numerator == 0,
        1.0,
        torch.where(denominator != 0, 1.0 - numerator / safe, 0.0),
    )
    return scores.mean(1), ok & (p.valid.sum(1) >= 2)


# -- scorers ----------------------------------------------------------------------
#: Batched metrics by name.
METRICS: dict[str, Metric] = {
    "accuracy": accuracy,
    "balanced_accuracy": balanced_accuracy,
    "log_loss": log_loss,
    "roc_auc": roc_auc,
    "r2": r2,
    "mean_squared_error": mean_squared_error,
    "root_mean_squared_error": root_mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
    **{
        f"{metric}_{average}": set_wise(metric, average)
        for metric in ("precision", "recall", "f1")
        for average in _AVERAGES
    },
}

_PLAIN = {
    skm.accuracy_score: "accuracy",
    skm.balanced_accuracy_score: "balanced_accuracy",
    skm.log_loss: "log_loss",
    skm.roc_auc_score: "roc_auc",
    skm.r2_score: "r2",
    skm.mean_squared_error: "mean_squared_error",
    skm.root_mean_squared_error: "root_mean_squared_error",
    skm.mean_absolute_error: "mean_absolute_error",
}
_SET_WISE = {
    skm.precision_score: "precision",
    skm.recall_score: "recall",
    skm.f1_score: "f1",
}
_RESPONSE = {
    "log_loss": ("predict_proba",),
    "roc_auc": (("decision_function", "predict_proba"), "predict_proba"),
}


def _scorer_key(scorer: _Scorer) -> str | None:
    func, kwargs = scorer._score_func, dict(scorer._kwargs)
    if func in _PLAIN:
        key = _PLAIN[func]
        if key == "balanced_accuracy" and kwargs.get("adjusted") is False:
            kwargs.pop("adjusted")
        return None if kwargs else key
    if func in _SET_WISE:
        average = kwargs.pop("average", "binary")
        pos_label = kwargs.pop("pos_label", 1)
        if kwargs or average not in _AVERAGES:
            return None
        if pos_label != 1 and not (pos_label is None and average != "binary"):
            return None
        return f"{_SET_WISE[func]}_{average}"
    return None


def scorer_metric(scorer, classifier: bool) -> tuple[str, float] | None:
    """Return the batched metric and sign equal to a scikit-learn scorer, or None.

    Parameters
    ----------
    scorer : object
        A scorer as scikit-learn's search holds it: a ``_Scorer`` (from a scorer
        name or ``make_scorer``) or the ``_PassthroughScorer`` of ``scoring=None``
        (the estimator's ``score``: accuracy or R²).
    classifier : bool
        Whether the scored estimator is a classifier.

    Returns
    -------
    (name, sign) or None
        The key of :data:`METRICS` and the scorer's sign (-1 for ``neg_*``
        scorers); None when the scorer has no batched equivalent here.
    """
    if type(scorer) is _PassthroughScorer:
        return ("accuracy" if classifier else "r2", 1.0)
    if type(scorer) is not _Scorer:
        return None
    key = _scorer_key(scorer)
    if key is None:
        return None
    response = scorer._response_method
    expected = _RESPONSE.get(key, ("predict",))
    if response not in expected:
        return None
    is_classification = key not in (
        "r2",
        "mean_squared_error",
        "root_mean_squared_error",
        "mean_absolute_error",
    )
    if is_classification != classifier:
        return None
    return key, float(scorer._sign)


def compute(name: str, predictions: Predictions) -> tuple[np.ndarray, np.ndarray]:
    """Compute metric ``name`` for every model of a batch.

    Parameters
    ----------
    name : str
        A key of :data:`METRICS`.
    predictions : Predictions
        The batch.

    Returns
    -------
    scores : ndarray of shape (M,)
        float64 values (meaningless where not ok).
    ok : ndarray of shape (M,)
        Whether scikit-learn's metric returns exactly that value, silently.
    """
    scores, ok = METRICS[name](predictions)
    return scores.cpu().numpy(), ok.cpu().numpy()
