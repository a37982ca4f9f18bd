"""Batched metrics against scikit-learn's scorers' metrics on the same predictions."""

import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from sklearn.metrics import get_scorer
from sklearn.metrics._scorer import _PassthroughScorer

from torchhpo.metrics import METRICS, Predictions, compute, scorer_metric

SIZES = [7, 30, 31, 12, 45, 3]
CLASSIFICATION = [
    "accuracy",
    "balanced_accuracy",
    "log_loss",
    *[
        f"{m}_{a}"
        for m in ("precision", "recall", "f1")
        for a in ("binary", "micro", "macro", "weighted", "samples")
    ],
]
REGRESSION = [
    "r2",
    "mean_squared_error",
    "root_mean_squared_error",
    "mean_absolute_error",
]


def _sklearn_value(name, y_true, y_pred, proba, sw):
    """What scikit-learn's scorer computes from these predictions (no sign)."""
    if name in ("accuracy", "balanced_accuracy", "r2"):
        func = {"accuracy": skm.accuracy_score, "r2": skm.r2_score}.get(
            name, skm.balanced_accuracy_score
        )
        return func(y_true, y_pred, sample_weight=sw)
    if name in REGRESSION:
        return getattr(skm, name)(y_true, y_pred, sample_weight=sw)
    if name == "log_loss":
        p = proba[:, 1] if proba.shape[1] == 2 else proba
        return skm.log_loss(y_true, p, sample_weight=sw)
    if name == "roc_auc":
        return skm.roc_auc_score(y_true, proba[:, 1], sample_weight=sw)
    metric, average = name.rsplit("_", 1)
    func = {"precision": skm.precision_score, "recall": skm.recall_score}.get(
        metric, skm.f1_score
    )
    pos = {} if average == "binary" else {"pos_label": None}
    return func(y_true, y_pred, average=average, sample_weight=sw, **pos)


def _batch(kind, y_true, y_pred, proba, weights):
    """Pad per-model arrays into a Predictions batch."""
    m, n = len(y_true), max(len(y) for y in y_true)
    valid = np.zeros((m, n), dtype=bool)
    w = np.zeros((m, n))

    def pad(arrays, dtype):
        shape = (m, n, *arrays[0].shape[1:])
        out = np.zeros(shape, dtype=dtype)
        for i, a in enumerate(arrays):
            out[i, : len(a)] = a
        return torch.as_tensor(out)

    for i, y in enumerate(y_true):
        valid[i, : len(y)] = True
        w[i, : len(y)] = 1.0 if weights is None else weights[i]
    dtype = {"regression": np.float64, "multilabel": bool}.get(kind, np.int64)
    return Predictions(
        kind,
        pad(y_true, dtype),
        pad(y_pred, dtype),
        None if proba is None else pad(proba, np.float64),
        torch.as_tensor(w),
        torch.as_tensor(valid),
        pos_index=1 if kind == "binary" else None,
    )


def _random_case(kind, rng, weighted, n_classes=4, ties=False):
    y_true, y_pred, proba, weights = [], [], [], []
    for i, n in enumerate(SIZES):
        if kind == "regression":
            t = rng.normal(size=(n, 2))
            y_true.append(t)
            y_pred.append(t + rng.normal(scale=0.5, size=(n, 2)))
        elif kind == "multilabel":
            t = rng.rand(n, n_classes) < 0.5
            if i % 2:  # rows with a label each: samplewise ratios are defined
                t[np.arange(n), rng.randint(n_classes, size=n)] = True
            p = np.clip(t * 0.6 + rng.rand(n, n_classes) * 0.5, 0, 1)
            y_true.append(t)
            proba.append(p)
            y_pred.append(p > 0.5)
        else:
            k = 2 if kind == "binary" else n_classes
            logits = rng.normal(size=(n, k))
            t = rng.randint(k, size=n)
            logits[np.arange(n), t] += 1.0
            if kind == "binary":
                p1 = 1 / (1 + np.exp(-(logits[:, 1] - logits[:, 0])))
                if ties:
                    p1 = np.round(p1, 1)
                p = np.stack([1 - p1, p1], 1)
                y_pred.append((p1 > 0.5).astype(np.int64))
            else:
                p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
                y_pred.append(p.argmax(1))
            y_true.append(t)
            proba.append(p)
        weights.append(rng.uniform(0.1, 3.0, size=n) if weighted else None)
    return y_true, y_pred, (proba or None), (weights if weighted else None)


def _check(name, kind, y_true, y_pred, proba, weights, strict=False):
    """Compare ok models' scores; with ``strict``, the others must warn or raise."""
    batch = _batch(kind, y_true, y_pred, proba, weights)
    scores, ok = compute(name, batch)
    for i in range(len(y_true)):
        sw = None if weights is None else weights[i]
        p = None if proba is None else proba[i]
        args = (name, y_true[i], y_pred[i], p, sw)
        if ok[i]:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                expected = _sklearn_value(*args)
            assert abs(scores[i] - expected) <= 1e-12 * max(1.0, abs(expected)), (
                name,
                i,
                scores[i],
                expected,
            )
        elif strict:
            # scikit-learn warns or raises there: the search asks it instead.
            with pytest.raises((Warning, ValueError)):
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    _sklearn_value(*args)
    return ok


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("name", CLASSIFICATION)
def test_classification_metrics_equal_sklearn(name, kind, weighted):
    rng = np.random.RandomState(hash((name, kind, weighted)) % 2**31)
    if kind == "multilabel" and name in ("balanced_accuracy", "log_loss"):
        pytest.skip("scikit-learn's metric does not take multilabel targets")
    case = _random_case(kind, rng, weighted)
    ok = _check(name, kind, *case)
    unsupported = (name.endswith("_samples") and kind != "multilabel") or (
        name.endswith("_binary") and kind != "binary"
    )
    if unsupported:
        assert not ok.any()
    elif name != "balanced_accuracy" or kind == "binary":
        assert ok.sum() >= 2, "too few models scored on the device"


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ties", [False, True])
def test_roc_auc_equals_sklearn(weighted, ties):
    rng = np.random.RandomState(3 + weighted + 2 * ties)
    case = _random_case("binary", rng, weighted, ties=ties)
    ok = _check("roc_auc", "binary", *case)
    assert ok.sum() >= 4


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", REGRESSION)
def test_regression_metrics_equal_sklearn(name, weighted):
    rng = np.random.RandomState(7 + weighted)
    ok = _check(name, "regression", *_random_case("regression", rng, weighted))
    assert ok.all()


def test_edge_cases_fall_back_where_sklearn_warns_or_raises():
    # one model predicts a class absent from y_true; one has one label only;
    # one has a constant target (R² still defined by force_finite)
    y_true = [np.array([0, 0, 1, 1]), np.array([0, 0, 0]), np.array([0, 1, 2, 2])]
    y_pred = [np.array([0, 2, 1, 1]), np.array([0, 0, 0]), np.array([0, 1, 2, 1])]
    proba = [np.full((len(y), 3), 1 / 3) for y in y_true]
    expected = {
        "balanced_accuracy": [False, False, True],
        "precision_macro": [True, True, True],
        "recall_macro": [False, True, True],
        "log_loss": [False, False, True],
    }
    for name, expected_ok in expected.items():
        ok = _check(name, "multiclass", y_true, y_pred, proba, None, strict=True)
        assert ok.tolist() == expected_ok, name
    constant = [np.ones((4, 1)), np.ones((1, 1)), np.arange(3.0)[:, None]]
    pred = [np.ones((4, 1)), np.zeros((1, 1)), np.ones((3, 1))]
    ok = _check("r2", "regression", constant, pred, None, None, strict=True)
    assert ok.tolist() == [True, False, True]


def test_padding_and_zero_weights_do_not_count():
    rng = np.random.RandomState(0)
    y_true, y_pred, proba, _ = _random_case("multiclass", rng, False)
    weights = [rng.uniform(0, 2, size=len(y)) for y in y_true]
    weights[1][:5] = 0.0
    for name in ("accuracy", "f1_weighted", "log_loss", "precision_micro"):
        _check(name, "multiclass", y_true, y_pred, proba, weights)


@pytest.mark.parametrize(
    ("scoring", "classifier", "expected"),
    [
        ("accuracy", True, ("accuracy", 1.0)),
        ("neg_log_loss", True, ("log_loss", -1.0)),
        ("f1", True, ("f1_binary", 1.0)),
        ("f1_macro", True, ("f1_macro", 1.0)),
        ("precision_samples", True, ("precision_samples", 1.0)),
        ("recall_weighted", True, ("recall_weighted", 1.0)),
        ("roc_auc", True, ("roc_auc", 1.0)),
        ("balanced_accuracy", True, ("balanced_accuracy", 1.0)),
        ("r2", False, ("r2", 1.0)),
        ("neg_mean_squared_error", False, ("mean_squared_error", -1.0)),
        ("neg_root_mean_squared_error", False, ("root_mean_squared_error", -1.0)),
        ("neg_mean_absolute_error", False, ("mean_absolute_error", -1.0)),
        ("roc_auc_ovr", True, None),
        ("neg_median_absolute_error", False, None),
        ("r2", True, None),
        ("accuracy", False, None),
    ],
)
def test_scorer_metric_recognises_builtin_scorers(scoring, classifier, expected):
    assert scorer_metric(get_scorer(scoring), classifier) == expected


def test_scorer_metric_other_scorers():
    assert scorer_metric(_PassthroughScorer(None), True) == ("accuracy", 1.0)
    assert scorer_metric(_PassthroughScorer(None), False) == ("r2", 1.0)
    made = skm.make_scorer(skm.f1_score, average="macro")
    assert scorer_metric(made, True) == ("f1_macro", 1.0)
    assert scorer_metric(skm.make_scorer(skm.f1_score, pos_label=0), True) is None
    assert scorer_metric(skm.make_scorer(skm.f1_score, zero_division=1), True) is None
    assert scorer_metric(lambda est, X, y: 0.0, True) is None
    assert set(METRICS) >= {"accuracy", "roc_auc", "f1_samples", "r2"}
