"""Score a search's fused models in batches on their device, instead of one by one.

After training, scikit-learn's ``_fit_and_score`` scores each (candidate, fold) model
separately: input checks, ``predict``, the scorer (~2.5 ms of Python per model on a
CPU). :func:`score_models` scores them together: one batched float64 forward pass
per group of equally shaped models over their padded test (and, with
``return_train_score``, training) rows, then :mod:`torchhpo.metrics` for every
model at once. It returns ``_fit_and_score``'s result dicts for the models it scored;
the scheduler scores the others through scikit-learn (:mod:`._replay`).

A model is scored here only when scikit-learn would return plain numbers for it:

* every scorer of the search is a built-in one with a batched equivalent
  (:func:`torchhpo.metrics.scorer_metric`), ``verbose <= 1``, no scorer metadata
  other than scikit-learn's own ``sample_weight`` forwarding, no callbacks;
* the model's MLP is of one of the four plain classes (torchhpo's or
  scikit-learn's ``MLPClassifier`` / ``MLPRegressor``), alone (its rows: the
  search's whole validated ``X``) or ending a Pipeline (each fold's test and
  training rows go once through that fold's fitted earlier steps, as in
  ``Pipeline.predict``, shared by the candidates with those steps), in float64;
* every metric is ok for it (no zero division, every class present where the
  metric needs it, finite predictions).

Predictions are the estimator's own (``predict`` / ``predict_proba`` compute in
float64 NumPy) up to float64 rounding of the matrix products; scores equal
scikit-learn's to ~1e-15. ``score_time`` is each model's share of its batch's
scoring time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.neural_network import MLPRegressor as SklearnMLPRegressor
from sklearn.utils.validation import validate_data

from .._device import resolve_device
from .._sklearn_compat import _MultimetricScorer, _num_samples, _safe_indexing
from ..engine import functional as F
from ..engine.scores import pad_rows
from ..metrics import Predictions, compute, scorer_metric
from ..neural_network import MLPClassifier, MLPRegressor

#: Internal switch: False scores every model through scikit-learn (tests compare).
ENABLED = True

_PLAIN_CLASSES = (
    MLPClassifier,
    MLPRegressor,
    SklearnMLPClassifier,
    SklearnMLPRegressor,
)

#: Bytes of activations one scoring batch may hold (CPU; CUDA: a share of free).
_CPU_BUDGET = 256 * 2**20


def _metrics(scorer, classifier: bool) -> list[tuple[str | None, str, float]] | None:
    """``(result name, metric, sign)`` per scorer (name None: a single scorer)."""
    if isinstance(scorer, _MultimetricScorer):
        named = list(scorer._scorers.items())
    else:
        named = [(None, scorer)]
    out = []
    for name, one in named:
        spec = scorer_metric(one, classifier)
        if spec is None:
            return None
        out.append((name, *spec))
    return out


def _score_weights(kwargs: dict, routing: bool, n_samples: int):
    """The whole-data scoring sample weights; False when not handled here."""
    score_params = kwargs.get("score_params") or {}
    if not score_params:
        return None
    if routing or set(score_params) != {"sample_weight"}:
        return False
    try:
        weights = np.asarray(score_params["sample_weight"], dtype=np.float64)
    except (TypeError, ValueError):
        return False
    if weights.shape != (n_samples,) or not np.isfinite(weights).all():
        return False
    return weights


def _eligible(model, context) -> bool:
    view = model.view
    if model.error is not None or view is None:
        return False
    if context is not None and getattr(context, "_callbacks", None):
        return False
    if type(model.form.given_mlp) not in _PLAIN_CLASSES:
        return False
    return view.X.dtype == np.float64 and view.whole == (not model.form.prefix)


def _encoded(model, y) -> np.ndarray:
    """The whole target, encoded as the model's training rows are (2-D)."""
    view, mlp = model.view, model.mlp
    if view.whole:
        return view.Y
    if hasattr(mlp, "_label_binarizer"):
        return mlp._label_binarizer.transform(y)
    y = np.asarray(y, dtype=np.float64)
    return y.reshape(len(y), -1)


def _target(model, y) -> tuple[str, np.ndarray, int | None]:
    """The model's target kind, its whole encoded target, and ``pos_label``'s index."""
    mlp, Y = model.mlp, _encoded(model, y)
    if not hasattr(mlp, "_label_binarizer"):
        return "regression", Y.astype(np.float64), None
    kind = mlp._target_kind()
    classes = np.asarray(mlp.classes_)
    if kind == "multilabel":
        return kind, Y.astype(bool), None
    if kind == "binary":
        if len(classes) != 2:
            return "unsupported", Y, None
        pos = None
        if classes.dtype.kind in "biuf" and (classes == 1).sum() == 1:
            pos = int(np.flatnonzero(classes == 1)[0])
        return kind, Y[:, 0].astype(np.int64), pos
    return kind, Y.argmax(1).astype(np.int64), None


def _transformed(model, X, index: np.ndarray) -> np.ndarray:
    """A Pipeline's rows as its final MLP sees them in ``predict``."""
    Xt = _safe_indexing(X, index)
    for _, step in model.view.prefix:
        if step is not None and not (isinstance(step, str) and step == "passthrough"):
            Xt = step.transform(Xt)
    Xt = validate_data(model.mlp, Xt, accept_sparse=["csr", "csc"], reset=False)
    return Xt.toarray() if sp.issparse(Xt) else np.asarray(Xt)


def _sources(model, X, split, train_scoring: bool):
    """The data to score a group on, and its test and training rows in that data.

    A bare MLP's view is the whole validated ``X`` (rows: the fold's indices); a
    Pipeline's test (and training) rows go through its fitted earlier steps, as in
    ``Pipeline.predict`` (a fold's view holds only its training rows as fitted).
    """
    train, test = (np.asarray(index) for index in split)
    if model.view.whole:
        return model.view.X, test, train
    parts = [_transformed(model, X, test)]
    if train_scoring:
        parts.append(_transformed(model, X, train))
    if any(part.dtype != np.float64 for part in parts):
        return None
    rows = np.arange(len(test) + (len(train) if train_scoring else 0))
    return np.concatenate(parts), rows[: len(test)], rows[len(test) :]


class _Batch:
    """Groups of equally shaped models sharing a view and device, scored together."""

    def __init__(self, device: torch.device, X: np.ndarray) -> None:
        self.device = device
        self.X = torch.as_tensor(X, dtype=torch.float64, device=device)
        self._targets: dict = {}

    def budget(self) -> int:
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            return max(_CPU_BUDGET, free // 4)
        return _CPU_BUDGET

    def target(self, key, Y: np.ndarray) -> torch.Tensor:
        if key not in self._targets:
            self._targets[key] = torch.as_tensor(Y, device=self.device)
        return self._targets[key]

    def forward(self, mlps: list, rows: torch.Tensor) -> torch.Tensor:
        """Output activations ``(M, n, n_outputs)`` of models over their rows."""

        def stacked(arrays: list) -> torch.Tensor:
            return torch.as_tensor(
                np.stack(arrays), dtype=torch.float64, device=self.device
            )

        first, layers = mlps[0], range(mlps[0].n_layers_ - 1)
        weights = [stacked([m.coefs_[i] for m in mlps]) for i in layers]
        biases = [stacked([m.intercepts_[i] for m in mlps])[:, None] for i in layers]
        runs = [(0, len(mlps), first.activation)]
        x = self.X[rows]
        return F.forward(x, weights, biases, runs, first.out_activation_)[-1]


def _padded(index_sets: Sequence[np.ndarray], device) -> tuple:
    """Row sets padded into ``(M, width)`` and the mask of their real entries."""
    rows, lengths = pad_rows(index_sets, device)
    valid = torch.arange(rows.shape[1], device=device)[None, :] < lengths[:, None]
    return rows, valid


def _predictions(kind, Y, pos, outputs, rows, valid, weights) -> Predictions:
    y_true = Y[rows]
    if kind == "regression":
        return Predictions(kind, y_true, outputs, None, weights, valid)
    if kind == "binary":
        p = outputs[..., 0]
        proba = torch.stack([1.0 - p, p], -1)
        y_pred = (p > 0.5).long()
    elif kind == "multiclass":
        proba, y_pred = outputs, outputs.argmax(-1)
    else:
        proba, y_pred = outputs, outputs > 0.5
    return Predictions(kind, y_true, y_pred, proba, weights, valid, pos)


def _score_rows(batch, members, kind, Y, pos, x_rows, y_rows, weights, metrics):
    """Scores ``(len(metrics), M)`` of models over their rows, and ok ``(M,)``.

    ``x_rows`` index the batch's data, ``y_rows`` the same rows in the search's
    data (targets, sample weights).
    """
    rows, valid = _padded(x_rows, batch.device)
    targets, _ = _padded(y_rows, batch.device)
    outputs = batch.forward([m.mlp for m in members], rows)
    finite = (torch.isfinite(outputs) | ~valid.unsqueeze(-1)).flatten(1).all(1)
    if weights is None:
        w = valid.double()
    else:
        w = torch.as_tensor(weights, device=batch.device)[targets] * valid
    outputs = torch.where(valid.unsqueeze(-1), outputs, 0.0)
    predictions = _predictions(kind, Y, pos, outputs, targets, valid, w)
    scores, ok = [], finite.cpu().numpy()
    for _, metric, sign in metrics:
        values, fine = compute(metric, predictions)
        scores.append(sign * values)
        ok = ok & fine
    return scores, ok


def _result(metrics, scores, m: int):
    values = {
        name: float(s[m]) for (name, _, _), s in zip(metrics, scores, strict=True)
    }
    return values[None] if None in values else values


def score_models(
    models: list,
    splits: list,
    X,
    y,
    fit_and_score_kwargs: dict,
    contexts: list,
    routing: bool,
) -> dict[int, dict]:
    """Score fused models in batches; return ``_fit_and_score`` results by index.

    Parameters
    ----------
    models : list of _Model
        The scheduler's fused models (trained, with their fitted MLPs applied).
    splits : list of (train, test)
        The folds.
    X, y : array-like
        The search's data.
    fit_and_score_kwargs : dict
        The search's ``_fit_and_score`` arguments (scorer, score params, ...).
    contexts : list
        Callback contexts per (candidate, fold) index.
    routing : bool
        Whether metadata routing is enabled.

    Returns
    -------
    dict
        ``{index: result}`` for the models scored here; the others are left to
        scikit-learn.
    """
    kwargs = fit_and_score_kwargs
    if not ENABLED or y is None or kwargs.get("verbose", 0) > 1 or not models:
        return {}
    weights = _score_weights(kwargs, routing, _num_samples(X))
    if weights is False:
        return {}
    data = (X, y, weights)
    groups: dict[tuple, list] = {}
    for model in models:
        if not _eligible(model, contexts[model.index]):
            continue
        mlp = model.mlp
        key = (
            resolve_device(mlp.device),
            id(model.view),
            tuple(c.shape for c in mlp.coefs_),
            mlp.activation,
            mlp.out_activation_,
        )
        groups.setdefault(key, []).append(model)
    results: dict[int, dict] = {}
    batches: dict[tuple, _Batch] = {}
    # Scoring runs after training, in this process alone: torch's own thread count
    # (measured on the quiet 2-core CPU: seed halving 6.8 s with one thread, 5.2 s
    # with two; set torch.set_num_threads(1) on a machine busy with other jobs).
    for key, members in groups.items():
        _score_group(key, members, batches, splits, data, kwargs, results)
    return results


def _score_group(key, members, batches, splits, data, kwargs, results) -> None:
    """Score one group of equally shaped models; add their results."""
    device, view_id, shapes, _, _ = key
    X, y, weights = data
    metrics = _metrics(kwargs["scorer"], hasattr(members[0].mlp, "_label_binarizer"))
    if metrics is None:
        return
    n_splits = len(splits)
    train_scoring = bool(kwargs.get("return_train_score"))
    begin = time.perf_counter()
    if (device, view_id) not in batches:
        try:
            kind, Y, pos = _target(members[0], y)
            split = splits[members[0].index % n_splits]
            sources = _sources(members[0], X, split, train_scoring)
        except Exception:  # scikit-learn's path raises or warns as it should
            sources = None
        batches[device, view_id] = (
            None
            if sources is None or kind == "unsupported"
            else (_Batch(device, sources[0]), kind, Y, pos, sources[1:])
        )
    if batches[device, view_id] is None:
        return
    batch, kind, Y, pos, (x_test, x_train) = batches[device, view_id]
    prepare = (time.perf_counter() - begin) / len(members)
    Y_dev = batch.target(kind, Y)
    width = (
        batch.X.shape[1]
        + sum(s[1] for s in shapes)
        + 8 * Y.reshape(len(Y), -1).shape[1]
    )
    rows = {}
    for model in members:
        train, test = (np.asarray(i) for i in splits[model.index % n_splits])
        if model.view.whole:  # rows of the whole X
            rows[model.index] = (test, test, train, train)
        else:  # the Pipeline fold's transformed rows (every member: that fold)
            rows[model.index] = (x_test, test, x_train, train)
    n_rows = max(len(r[0]) for r in rows.values())
    if train_scoring:
        n_rows = max(n_rows, *(len(r[2]) for r in rows.values()))
    chunk = max(1, batch.budget() // (n_rows * width * 8 * 3))
    for start in range(0, len(members), chunk):
        part = members[start : start + chunk]
        parts = [rows[m.index] for m in part]
        begin = time.perf_counter()
        test_scores, ok = _score_rows(
            batch,
            part,
            kind,
            Y_dev,
            pos,
            [r[0] for r in parts],
            [r[1] for r in parts],
            weights,
            metrics,
        )
        # synchronised (scores are on the host): each model's share of the batch
        share = prepare + (time.perf_counter() - begin) / len(part)
        train_scores = None
        if train_scoring:
            train_scores, train_ok = _score_rows(
                batch,
                part,
                kind,
                Y_dev,
                pos,
                [r[2] for r in parts],
                [r[3] for r in parts],
                weights,
                metrics,
            )
            ok = ok & train_ok
        for m, model in enumerate(part):
            if not ok[m]:
                continue
            result = {
                "fit_error": None,
                "test_scores": _result(metrics, test_scores, m),
            }
            if train_scores is not None:
                result["train_scores"] = _result(metrics, train_scores, m)
            if kwargs.get("return_n_test_samples"):
                result["n_test_samples"] = len(parts[m][1])
            if kwargs.get("return_times"):
                result["fit_time"] = model.fit_time
                result["score_time"] = share
            results[model.index] = result
