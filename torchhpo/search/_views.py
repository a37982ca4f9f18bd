"""Data views: the validated rows that fused models train on.

A bare MLP candidate trains on the search's whole ``X`` (validated once; each fold is
an index set into it). A Pipeline candidate trains on each fold's output of its
earlier steps, fitted on that fold's training rows on the CPU; candidates whose
earlier steps are configured alike share those fitted steps and their output.

Whenever a view cannot reproduce exactly what a candidate's own ``fit`` on a fold
would see (its validation fails, or a classification fold lacks a class so that
fold's label encoding differs), the view is withheld and the candidate's fits run
per fit instead, which gives scikit-learn's own behaviour.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from sklearn.base import clone, is_classifier

from .._sklearn_compat import (
    _check_method_params,
    _check_sample_weight,
    _safe_indexing,
)
from ..neural_network import BaseMLP
from ._estimators import FusedForm


@dataclass
class View:
    """Validated training rows for fused MLPs.

    Attributes
    ----------
    X : ndarray of shape (n_rows, n_features)
        Dense inputs as the MLP's ``fit`` validates them.
    Y : ndarray of shape (n_rows, n_outputs)
        Encoded targets (indicator columns for classification).
    sample_weight : ndarray of shape (n_rows,) or None
    attrs : dict
        Attributes the MLP's input validation sets (``n_features_in_``,
        ``feature_names_in_``, ``classes_``, the label encoder).
    whole : bool
        True when the rows are the search's whole data (a fold's rows are its
        training indices); False when they are one fold's training rows.
    prefix : list of (str, estimator)
        Fitted earlier Pipeline steps.
    prefix_time : float
        Seconds spent fitting ``prefix`` (shared by the models using the view).
    n_models : int
        Models trained on the view.
    n_train : int
        With ``whole=False``: the fold's training rows come first, then (for
        ``partial_fit`` scoring) its test rows, through the same earlier steps.
    """

    X: np.ndarray
    Y: np.ndarray
    sample_weight: np.ndarray | None
    attrs: dict
    whole: bool
    prefix: list = field(default_factory=list)
    prefix_time: float = 0.0
    n_models: int = 0
    n_train: int | None = None

    def __post_init__(self) -> None:
        if self.n_train is None:
            self.n_train = len(self.X)

    @property
    def n_outputs(self) -> int:
        return self.Y.shape[1]

    def rows(self, train: np.ndarray) -> np.ndarray:
        """Return the view's rows holding the fold with training indices ``train``."""
        if self.whole:
            return np.asarray(train, dtype=np.int64)
        return np.arange(self.n_train, dtype=np.int64)

    def test_rows(self, test: np.ndarray) -> np.ndarray | None:
        """Return the view's rows holding the fold's test rows, None if it has none."""
        if self.whole:
            return np.asarray(test, dtype=np.int64)
        if self.n_train == len(self.X):
            return None
        return np.arange(self.n_train, len(self.X), dtype=np.int64)


def _validate(mlp: BaseMLP, X, y, sample_weight):
    """Validate data as ``mlp.fit`` does; return the view's arrays and attributes."""
    template = clone(mlp)
    Xv, yv = template._validate_input(X, y, incremental=False, reset=True)
    if sample_weight is not None:
        sample_weight = _check_sample_weight(sample_weight, Xv)
    if sp.issparse(Xv):
        Xv = Xv.toarray()
    Y = yv.reshape(-1, 1) if yv.ndim == 1 else yv
    params = template.get_params(deep=False)
    attrs = {k: v for k, v in vars(template).items() if k not in params}
    return Xv, Y, sample_weight, attrs


def _same_encoding(a: dict, b: dict) -> bool:
    """Whether two validations encode targets identically (same classes)."""
    if "_label_binarizer" not in a:
        return True
    la, lb = a["_label_binarizer"], b["_label_binarizer"]
    return la.y_type_ == lb.y_type_ and np.array_equal(la.classes_, lb.classes_)


def _has_every_class(Y: np.ndarray, rows: np.ndarray, attrs: dict) -> bool:
    """Whether a fold's training rows hold every class of the whole target."""
    binarizer = attrs.get("_label_binarizer")
    if binarizer is None or binarizer.y_type_.startswith("multilabel"):
        return True
    sub = Y[rows]
    if sub.shape[1] == 1:
        return len(binarizer.classes_) == 2 and sub.min() != sub.max()
    return bool(sub.any(axis=0).all())


class Views:
    """Build and cache the views of one search's data.

    Parameters
    ----------
    X, y : array-like
        The search's data.
    splits : list of (train, test)
        The folds.
    fit_params : dict
        Fit params routed to the estimator (whole length; split per fold here).
    partial_fit : bool
        The models train by ``partial_fit`` with the whole target's classes, so a
        fold lacking a class is encoded as the whole target and is served too.
    """

    def __init__(
        self, X, y, splits, fit_params: dict, partial_fit: bool = False
    ) -> None:
        self.X, self.y, self.splits, self.fit_params = X, y, splits, fit_params
        self.partial_fit = partial_fit
        self._whole: dict = {}
        self._folds: dict = {}
        self._encodings: dict = {}

    def get(self, form: FusedForm, split: int) -> View | BaseException | None:
        """Return the view a candidate trains on in fold ``split``.

        Returns
        -------
        View, or the exception fitting the candidate on that fold raises (the
        Pipeline's earlier steps, or the MLP's input validation), or None when the
        fold must be fitted per fit.
        """
        if form.prefix:
            return self._fold_view(form, split)
        view = self._whole_view(form.mlp)
        if view is None:
            return None
        train = self.splits[split][0]
        if self.partial_fit or _has_every_class(view.Y, view.rows(train), view.attrs):
            return view
        return None

    def _whole_view(self, mlp: BaseMLP) -> View | None:
        key = type(mlp)
        if key not in self._whole:
            try:
                X, Y, sw, attrs = _validate(
                    mlp, self.X, self.y, self.fit_params.get("sample_weight")
                )
            except Exception:
                # Each fit raises (or not) on its own fold: let them run per fit.
                self._whole[key] = None
            else:
                self._whole[key] = View(X, Y, sw, attrs, whole=True)
        return self._whole[key]

    def _encoding(self, mlp: BaseMLP) -> dict | None:
        """Attributes of the label encoding of the whole target (classifiers)."""
        key = type(mlp)
        if key not in self._encodings:
            probe = clone(mlp)
            try:
                if is_classifier(probe):
                    probe.encode_targets(self.y)
            except Exception:
                self._encodings[key] = None
            else:
                self._encodings[key] = {
                    k: v
                    for k, v in vars(probe).items()
                    if k not in probe.get_params(deep=False)
                }
        return self._encodings[key]

    def _fold_view(self, form: FusedForm, split: int):
        prefix_key = form.prefix_key()
        key = (prefix_key, split, type(form.mlp))
        if prefix_key is not None and key in self._folds:
            return self._folds[key]
        view = self._fit_fold(form, split)
        if prefix_key is not None:
            self._folds[key] = view
        return view

    def _fit_fold(self, form: FusedForm, split: int):
        encoding = self._encoding(form.mlp)
        if encoding is None:
            return None
        train = self.splits[split][0]
        X_train = _safe_indexing(self.X, train)
        y_train = None if self.y is None else _safe_indexing(self.y, train)
        params = _check_method_params(self.X, params=self.fit_params, indices=train)
        final = form.final_name
        prefix_params = {k: v for k, v in params.items() if k.split("__")[0] != final}
        start = time.perf_counter()
        try:
            prefix = form.prefix_pipeline()
            Xt = prefix.fit_transform(X_train, y_train, **prefix_params)
            prefix_time = time.perf_counter() - start
            X, Y, sw, attrs = _validate(
                form.mlp, Xt, y_train, params.get(f"{final}__sample_weight")
            )
        except Exception as exc:
            return exc
        if not _same_encoding(attrs, encoding):
            return None
        view = View(X, Y, sw, attrs, False, list(prefix.steps), prefix_time)
        if self.partial_fit:
            _append_test_rows(view, prefix, self.X, self.y, self.splits[split])
        return view


def _append_test_rows(view: View, prefix, X, y, split) -> None:
    """Append a fold's test rows, through its fitted earlier steps, for scoring.

    Left out (the fold is then not scored per epoch) when they cannot be encoded.
    """
    test = split[1]
    try:
        Xt = prefix.transform(_safe_indexing(X, test))
        if sp.issparse(Xt):
            Xt = Xt.toarray()
        Xt = np.asarray(Xt, dtype=view.X.dtype)
        y_test = _safe_indexing(y, test)
        binarizer = view.attrs.get("_label_binarizer")
        if binarizer is not None:
            Yt = binarizer.transform(y_test).astype(view.Y.dtype)
        else:
            Yt = np.asarray(y_test, dtype=view.Y.dtype)
        Yt = Yt.reshape(len(Xt), -1)
        if Xt.shape[1] != view.X.shape[1] or Yt.shape[1] != view.Y.shape[1]:
            return
    except Exception:
        return
    view.X = np.concatenate([view.X, Xt])
    view.Y = np.concatenate([view.Y, Yt])
    if view.sample_weight is not None:
        view.sample_weight = np.concatenate([view.sample_weight, np.ones(len(Xt))])
