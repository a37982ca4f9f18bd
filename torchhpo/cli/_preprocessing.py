"""The run's preprocessing: what is fitted per fold before the MLP, and its saved form.

* ``standardize``: a ``StandardScaler``;
* ``auto``: scikit-learn's ``ColumnTransformer``: numeric columns imputed with the
  median and standardized, other (string) columns imputed with the most frequent
  value and one-hot encoded, categories unseen in training ignored (all zeros);
* ``none``: nothing.

Inside the search these are the earlier steps of a ``Pipeline``, fitted on each
fold's training rows. A fitted step becomes a :class:`FittedPreprocessing`: its
statistics as arrays and lists, which the run folder stores without pickle
(``_model_io``), which applies them as scikit-learn's fitted steps do
(:meth:`FittedPreprocessing.transform`), and which the ONNX export folds into the
graph where it can (``_export``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

#: Step name of the preprocessing in the run's Pipeline (``auto``).
PREPROCESS_STEP = "preprocess"
NUMERIC, CATEGORICAL = "numeric", "categorical"


def auto_preprocessor(numeric: list[str], categorical: list[str]) -> ColumnTransformer:
    """Return the unfitted ``ColumnTransformer`` of ``preprocessing: auto``.

    Parameters
    ----------
    numeric : list of str
        Numeric columns: median imputation, then standardization.
    categorical : list of str
        String columns: most-frequent imputation, then one-hot encoding
        (``handle_unknown="ignore"``).
    """
    parts = []
    if numeric:
        parts.append(
            (
                NUMERIC,
                Pipeline(
                    [
                        (
                            "impute",
                            SimpleImputer(strategy="median", keep_empty_features=True),
                        ),
                        ("scale", StandardScaler()),
                    ]
                ),
                list(numeric),
            )
        )
    if categorical:
        parts.append(
            (
                CATEGORICAL,
                Pipeline(
                    [
                        (
                            "impute",
                            SimpleImputer(
                                strategy="most_frequent", keep_empty_features=True
                            ),
                        ),
                        (
                            "onehot",
                            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                        ),
                    ]
                ),
                list(categorical),
            )
        )
    return ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


@dataclass(eq=False, repr=False)
class FittedPreprocessing(TransformerMixin, BaseEstimator):
    """A fitted preprocessing step as plain statistics; applies them like the step.

    A scikit-learn transformer (``transform``, ``get_feature_names_out``, tags),
    fitted from the start: a loaded model's ``model[:-1].transform(X)`` gives the
    features its MLP takes, and ``model[:-1].get_feature_names_out()`` their names.

    Attributes
    ----------
    kind : {"standardize", "auto"}
    numeric : list of str
        Numeric input columns (``auto``), in output order.
    categorical : list of str
        Categorical input columns (``auto``), after the numeric ones.
    median : ndarray or None
        Imputation values of the numeric columns (``auto``).
    mean, scale : ndarray or None
        The scaler's ``mean_`` and ``scale_`` (None where the scaler has none).
    most_frequent : list of str
        Imputation values of the categorical columns.
    categories : list of list of str
        One-hot categories per categorical column.
    """

    kind: str
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    median: np.ndarray | None = None
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    most_frequent: list = field(default_factory=list)
    categories: list[list] = field(default_factory=list)

    @classmethod
    def from_step(cls, step) -> FittedPreprocessing:
        """Read a fitted ``StandardScaler`` or :func:`auto_preprocessor` step.

        Raises
        ------
        TypeError
            For any other step.
        """
        if isinstance(step, FittedPreprocessing):
            return step
        if isinstance(step, StandardScaler):
            return cls("standardize", mean=step.mean_, scale=step.scale_)
        if not isinstance(step, ColumnTransformer):
            raise TypeError(
                "expected a StandardScaler or the ColumnTransformer of "
                f"preprocessing: auto, got {type(step).__name__}."
            )
        if not _is_auto(step):
            raise TypeError(
                "expected the ColumnTransformer of preprocessing: auto (parts "
                f"{NUMERIC!r} and/or {CATEGORICAL!r}), got parts "
                f"{[name for name, *_ in step.transformers]}."
            )
        fitted = cls("auto")
        named = step.named_transformers_
        if NUMERIC in named:
            pipe = named[NUMERIC]
            fitted.numeric = [str(c) for c in _columns(step, NUMERIC)]
            fitted.median = np.asarray(pipe["impute"].statistics_, dtype=np.float64)
            fitted.mean = pipe["scale"].mean_
            fitted.scale = pipe["scale"].scale_
        if CATEGORICAL in named:
            pipe = named[CATEGORICAL]
            fitted.categorical = [str(c) for c in _columns(step, CATEGORICAL)]
            fitted.most_frequent = [str(v) for v in pipe["impute"].statistics_]
            fitted.categories = [
                [str(v) for v in values] for values in pipe["onehot"].categories_
            ]
        return fitted

    @property
    def columns(self) -> list[str]:
        """The raw input columns (``auto``), in the order the step reads them."""
        return [*self.numeric, *self.categorical]

    def encoded_names(self) -> list[str]:
        """Names of the encoded features: numeric columns, then ``column_category``."""
        names = list(self.numeric)
        for column, values in zip(self.categorical, self.categories, strict=True):
            names.extend(f"{column}_{value}" for value in values)
        return names

    # The scikit-learn transformer surface, for the loaded Pipeline.
    def fit(self, X, y=None) -> FittedPreprocessing:
        """Return self: the statistics are already fitted."""
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return True

    @property
    def n_features_in_(self) -> int:
        """Number of input columns the step reads."""
        if self.kind == "standardize":
            return len(self.mean if self.mean is not None else self.scale)
        return len(self.columns)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Names of the output features.

        Parameters
        ----------
        input_features : array-like of str, optional
            ``standardize``: the input column names (default ``x0, x1, ...``, as
            scikit-learn names columns it was not told); ``auto``: ignored (the
            step knows its columns).

        Returns
        -------
        ndarray of str
            ``standardize``: the input names; ``auto``: the numeric columns, then
            ``column_category`` per one-hot category (:meth:`encoded_names`).
        """
        if self.kind == "auto":
            return np.asarray(self.encoded_names(), dtype=object)
        if input_features is None:
            input_features = [f"x{i}" for i in range(self.n_features_in_)]
        if len(input_features) != self.n_features_in_:
            raise ValueError(
                f"input_features should have length equal to number of features "
                f"({self.n_features_in_}), got {len(input_features)}"
            )
        return np.asarray(input_features, dtype=object)

    def transform(self, X) -> np.ndarray:
        """Apply the fitted statistics as the scikit-learn step would.

        Parameters
        ----------
        X : ndarray or DataFrame
            ``standardize``: numeric columns; ``auto``: a DataFrame with the
            :attr:`columns` (others are ignored).

        Returns
        -------
        ndarray of shape (n_samples, n_encoded), float64
        """
        if self.kind == "standardize":
            out = np.array(X, dtype=np.float64)
            if self.mean is not None:
                out -= self.mean
            if self.scale is not None:
                out /= self.scale
            return out
        blocks = []
        if self.numeric:
            values = np.array(X[self.numeric], dtype=np.float64)
            values = np.where(np.isnan(values), self.median, values)
            values -= self.mean
            values /= self.scale
            blocks.append(values)
        for column, fill, values in zip(
            self.categorical, self.most_frequent, self.categories, strict=True
        ):
            cells = np.asarray(X[column], dtype=object)
            cells = np.array(
                [fill if _missing(v) else str(v) for v in cells], dtype=object
            )
            blocks.append(
                (cells[:, None] == np.asarray(values, dtype=object)[None, :]).astype(
                    np.float64
                )
            )
        return np.hstack(blocks) if blocks else np.empty((len(X), 0))


def _is_auto(step: ColumnTransformer) -> bool:
    """Whether a fitted ColumnTransformer is one :func:`auto_preprocessor` made."""
    expected = {
        NUMERIC: (SimpleImputer, StandardScaler),
        CATEGORICAL: (SimpleImputer, OneHotEncoder),
    }
    if not hasattr(step, "transformers_"):
        return False
    parts = [(n, t) for n, t, _ in step.transformers_ if n != "remainder"]
    if not parts:
        return False
    for name, transformer in parts:
        kinds = expected.get(name)
        if kinds is None or not isinstance(transformer, Pipeline):
            return False
        steps = [s for _, s in transformer.steps]
        if len(steps) != 2 or not all(
            isinstance(s, k) for s, k in zip(steps, kinds, strict=True)
        ):
            return False
    return True


def _columns(step: ColumnTransformer, name: str) -> list:
    for part_name, _, columns in step.transformers_:
        if part_name == name:
            return list(columns)
    raise KeyError(name)  # pragma: no cover


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
