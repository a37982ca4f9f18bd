"""Save and load a fitted model without pickle: tensors + JSON.

``model.pt`` is a flat state dict of tensors written with :func:`torch.save` and
read with ``torch.load(weights_only=True)`` (plain tensors only: no code runs on
load). ``model.json`` holds what rebuilds a predicting estimator: the class name,
``get_params()``, ``classes_`` and the label encoding, and the fitted attributes
prediction needs (``n_layers_``, ``n_outputs_``, ``out_activation_``,
``n_features_in_``) plus the training record (``n_iter_``, ``loss_curve_``, ...).

Weights are stored in the dtype the estimator holds them in (float64 for float64
input), so the rebuilt model predicts exactly as the saved one.

A run's preprocessing is saved with it: a ``StandardScaler``'s statistics
(``standardize.*`` tensors), or the ``auto`` ``ColumnTransformer``'s (median,
mean and scale as ``preprocess.*`` tensors; columns, imputed categories and
one-hot categories as JSON text), which load as a
:class:`~torchhpo.cli._preprocessing.FittedPreprocessing` step applying them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelBinarizer, StandardScaler

from ..neural_network import BaseMLP, MLPClassifier, MLPRegressor
from ._build import MLP_STEP, SCALER_STEP
from ._preprocessing import PREPROCESS_STEP, FittedPreprocessing

FORMAT = "torchhpo-model/1"
WEIGHTS_FILE, META_FILE = "model.pt", "model.json"

#: Estimator classes a saved model may name (nothing else is ever built).
MODEL_CLASSES: dict[str, type[BaseMLP]] = {
    "MLPClassifier": MLPClassifier,
    "MLPRegressor": MLPRegressor,
}

#: Fitted scalars and lists saved as they are (those a model has).
_FITTED = (
    "n_layers_",
    "n_outputs_",
    "out_activation_",
    "n_features_in_",
    "n_iter_",
    "t_",
    "loss_",
    "best_loss_",
    "loss_curve_",
    "validation_scores_",
    "best_validation_score_",
)

_BINARIZER_PARAMS = ("neg_label", "pos_label", "sparse_output")
_BINARIZER_FITTED = ("y_type_", "sparse_input_")


class ModelFormatError(ValueError):
    """A model folder that is not a torchhpo model saved by :func:`save_model`."""


def _json_value(value):
    """Return ``value`` as JSON data (tuples and NumPy scalars converted)."""
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_value(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.device):
        return str(value)
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot save {type(value).__name__} value {value!r} as JSON")


def split_model(estimator) -> tuple[FittedPreprocessing | None, BaseMLP]:
    """Return a model's preprocessing (as statistics, or None) and its MLP.

    Parameters
    ----------
    estimator : MLP or Pipeline
        An MLP, or a Pipeline of one preprocessing step (a ``StandardScaler``, the
        ``auto`` ColumnTransformer or a loaded :class:`FittedPreprocessing`) and
        the MLP.

    Raises
    ------
    TypeError
        For any other Pipeline.
    """
    if isinstance(estimator, Pipeline):
        steps = [step for _, step in estimator.steps]
        if len(steps) == 1:
            return None, steps[0]
        if len(steps) == 2:
            try:
                return FittedPreprocessing.from_step(steps[0]), steps[1]
            except TypeError:
                pass
        raise TypeError(
            "expected an MLP or a Pipeline of a StandardScaler or the "
            "preprocessing: auto ColumnTransformer and an MLP; got a Pipeline of "
            f"{', '.join(type(s).__name__ for s in steps)}."
        )
    return None, estimator


def save_model(estimator, folder: str | Path, extra: dict | None = None) -> list[Path]:
    """Write a fitted torchhpo MLP (optionally after its preprocessing) to a folder.

    Parameters
    ----------
    estimator : MLPClassifier, MLPRegressor or Pipeline
        Fitted; a Pipeline is a ``StandardScaler`` or the ``preprocessing: auto``
        ColumnTransformer followed by the MLP.
    folder : str or Path
        Existing folder; ``model.pt`` and ``model.json`` are written into it.
    extra : dict, optional
        JSON data stored under ``"data"`` (feature names, target name).

    Returns
    -------
    list of Path
        The files written.
    """
    preprocessing, mlp = split_model(estimator)
    name = type(mlp).__name__
    if MODEL_CLASSES.get(name) is not type(mlp):
        raise TypeError(f"save_model saves torchhpo MLPs, got {name}.")
    tensors = {}
    for i, (coef, intercept) in enumerate(
        zip(mlp.coefs_, mlp.intercepts_, strict=True)
    ):
        tensors[f"coefs.{i}"] = torch.from_numpy(np.ascontiguousarray(coef))
        tensors[f"intercepts.{i}"] = torch.from_numpy(np.ascontiguousarray(intercept))
    meta = {
        "format": FORMAT,
        "estimator": name,
        "params": {k: _json_value(v) for k, v in mlp.get_params().items()},
        "fitted": {k: _json_value(getattr(mlp, k)) for k in _FITTED if hasattr(mlp, k)},
        "n_coefs": len(mlp.coefs_),
        "preprocessing": None,
        "data": extra or {},
    }
    if hasattr(mlp, "feature_names_in_"):
        meta["fitted"]["feature_names_in_"] = _json_value(mlp.feature_names_in_)
    if hasattr(mlp, "classes_"):
        binarizer = mlp._label_binarizer
        meta["classes"] = {
            "values": _json_value(mlp.classes_),
            "dtype": mlp.classes_.dtype.str,
        }
        meta["label_binarizer"] = {
            k: _json_value(getattr(binarizer, k))
            for k in _BINARIZER_PARAMS + _BINARIZER_FITTED
        }
    scaler = estimator[0] if preprocessing is not None else None
    if preprocessing is not None and preprocessing.kind == "auto":
        scaler = None
        for key in ("median", "mean", "scale"):
            value = getattr(preprocessing, key)
            if value is not None:
                tensors[f"preprocess.{key}"] = torch.from_numpy(
                    np.ascontiguousarray(value, dtype=np.float64)
                )
        meta["preprocessing"] = {
            "kind": "auto",
            "numeric": preprocessing.numeric,
            "categorical": preprocessing.categorical,
            "most_frequent": preprocessing.most_frequent,
            "categories": preprocessing.categories,
        }
    if scaler is not None:
        for key in ("mean_", "var_", "scale_"):
            value = getattr(scaler, key)
            if value is not None:
                tensors[f"standardize.{key.rstrip('_')}"] = torch.from_numpy(
                    np.ascontiguousarray(value)
                )
        meta["preprocessing"] = {
            "kind": "standardize",
            "params": {k: _json_value(v) for k, v in scaler.get_params().items()},
            "n_features_in_": int(scaler.n_features_in_),
            "n_samples_seen_": _json_value(scaler.n_samples_seen_),
        }
    folder = Path(folder)
    weights, meta_path = folder / WEIGHTS_FILE, folder / META_FILE
    torch.save(tensors, weights)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return [weights, meta_path]


def _read_meta(folder: Path) -> dict:
    meta_path = folder / META_FILE
    for path in (meta_path, folder / WEIGHTS_FILE):
        if not path.is_file():
            raise ModelFormatError(
                f"{folder} holds no saved model: {path.name} is missing."
            )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFormatError(f"{meta_path} is not a {FORMAT} file.")
    return meta


def _array(tensors: dict, key: str) -> np.ndarray:
    if key not in tensors:
        raise ModelFormatError(f"{WEIGHTS_FILE} lacks the tensor {key!r}.")
    return tensors[key].numpy().copy()


def load_model(folder: str | Path):
    """Rebuild the estimator saved by :func:`save_model`; it predicts as the saved one.

    Only ``torch.load(weights_only=True)`` and JSON are read: no pickle.

    Parameters
    ----------
    folder : str or Path
        A folder holding ``model.pt`` and ``model.json`` (a run folder).

    Returns
    -------
    MLPClassifier, MLPRegressor or Pipeline
        A Pipeline ``(standardize, mlp)`` when the model was saved with its scaler.

    Raises
    ------
    ModelFormatError
        If the folder holds no model in this format.
    """
    folder = Path(folder)
    meta = _read_meta(folder)
    tensors = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    cls = MODEL_CLASSES.get(meta.get("estimator"))
    if cls is None:
        raise ModelFormatError(
            f"unknown estimator {meta.get('estimator')!r}; expected one of "
            f"{', '.join(MODEL_CLASSES)}."
        )
    params = dict(meta["params"])
    if isinstance(params.get("hidden_layer_sizes"), list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    mlp = cls(**params)
    for key, value in meta["fitted"].items():
        if key == "feature_names_in_":
            value = np.asarray(value, dtype=object)
        setattr(mlp, key, value)
    n = meta["n_coefs"]
    mlp.coefs_ = [_array(tensors, f"coefs.{i}") for i in range(n)]
    mlp.intercepts_ = [_array(tensors, f"intercepts.{i}") for i in range(n)]
    if "classes" in meta:
        classes = np.asarray(meta["classes"]["values"], dtype=meta["classes"]["dtype"])
        saved = meta["label_binarizer"]
        binarizer = LabelBinarizer(**{k: saved[k] for k in _BINARIZER_PARAMS})
        for key in _BINARIZER_FITTED:
            setattr(binarizer, key, saved[key])
        binarizer.classes_ = classes
        mlp.classes_ = classes
        mlp._label_binarizer = binarizer
    preprocessing = meta.get("preprocessing")
    if preprocessing is None:
        return mlp
    if preprocessing.get("kind") == "auto":
        numeric = list(preprocessing["numeric"])
        step = FittedPreprocessing(
            "auto",
            numeric=numeric,
            categorical=list(preprocessing["categorical"]),
            most_frequent=list(preprocessing["most_frequent"]),
            categories=[list(c) for c in preprocessing["categories"]],
        )
        if numeric:
            step.median, step.mean, step.scale = (
                _array(tensors, f"preprocess.{key}")
                for key in ("median", "mean", "scale")
            )
        return Pipeline([(PREPROCESS_STEP, step), (MLP_STEP, mlp)])
    scaler = StandardScaler(**preprocessing["params"])
    for key in ("mean", "var", "scale"):
        name = f"standardize.{key}"
        setattr(scaler, f"{key}_", _array(tensors, name) if name in tensors else None)
    scaler.n_features_in_ = preprocessing["n_features_in_"]
    scaler.n_samples_seen_ = preprocessing["n_samples_seen_"]
    return Pipeline([(SCALER_STEP, scaler), (MLP_STEP, mlp)])


def load_model_info(folder: str | Path) -> dict:
    """Return the ``"data"`` section of a saved model (feature and target names)."""
    meta = _read_meta(Path(folder))
    return dict(meta.get("data") or {})
