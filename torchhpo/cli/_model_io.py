"""Save and load a fitted model without pickle: tensors + JSON.

``model.safetensors`` holds the tensors in the safetensors format (a JSON table and
raw bytes: no unpickler runs on load, whatever the file holds). ``model.json`` holds
what rebuilds a predicting estimator: the class name,
``get_params()``, ``classes_`` and the label encoding, and the fitted attributes
prediction needs (``n_layers_``, ``n_outputs_``, ``out_activation_``,
``n_features_in_``) plus the training record (``n_iter_``, ``loss_curve_``, ...).

Weights are stored in the dtype the estimator holds them in (float64 for float64
input), so the rebuilt model predicts exactly as the saved one.

What is read back is checked before a model is built from it (:func:`load_model`):
``model.json`` against the tensors (layer shapes chained from ``n_features_in_`` to
``n_outputs_``, the hidden sizes, one float dtype, the class count against the
output width, finite values), and only the fitted attributes this module writes
are set. A folder that fails gets a :class:`ModelFormatError` of one line naming
the file and the problem. A run folder of torchhpo 0.1 (``model.pt``, read with
``torch.load``) is refused with an error saying to rerun its config.

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
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelBinarizer, StandardScaler

from ..neural_network import BaseMLP, MLPClassifier, MLPRegressor
from ._build import MLP_STEP, SCALER_STEP
from ._preprocessing import PREPROCESS_STEP, FittedPreprocessing

FORMAT = "torchhpo-model/2"
WEIGHTS_FILE, META_FILE = "model.safetensors", "model.json"
#: The tensors file of format 1 (``torch.save``), refused since.
OLD_WEIGHTS_FILE = "model.pt"

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
        Existing folder; ``model.safetensors`` and ``model.json`` are written
        into it.
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
        tensors[f"coefs.{i}"] = np.ascontiguousarray(coef)
        tensors[f"intercepts.{i}"] = np.ascontiguousarray(intercept)
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
                tensors[f"preprocess.{key}"] = np.ascontiguousarray(
                    value, dtype=np.float64
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
                tensors[f"standardize.{key.rstrip('_')}"] = np.ascontiguousarray(value)
        meta["preprocessing"] = {
            "kind": "standardize",
            "params": {k: _json_value(v) for k, v in scaler.get_params().items()},
            "n_features_in_": int(scaler.n_features_in_),
            "n_samples_seen_": _json_value(scaler.n_samples_seen_),
        }
    folder = Path(folder)
    weights, meta_path = folder / WEIGHTS_FILE, folder / META_FILE
    save_file(tensors, weights)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return [weights, meta_path]


def _read_meta(folder: Path) -> dict:
    meta_path = folder / META_FILE
    if not (folder / WEIGHTS_FILE).is_file() and (folder / OLD_WEIGHTS_FILE).is_file():
        raise ModelFormatError(
            f"{folder / OLD_WEIGHTS_FILE}: a model saved by an older torchhpo "
            f"(torch.save format); this version reads {WEIGHTS_FILE} only (no "
            "unpickler runs on it). Run the run's config.yaml again to save it anew."
        )
    for path in (meta_path, folder / WEIGHTS_FILE):
        if not path.is_file():
            raise ModelFormatError(
                f"{folder} holds no saved model: {path.name} is missing."
            )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelFormatError(f"{meta_path}: not readable JSON ({error}).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        if isinstance(meta, dict) and meta.get("format") == "torchhpo-model/1":
            raise ModelFormatError(
                f"{meta_path}: a model saved by an older torchhpo (format 1); "
                "run the run's config.yaml again to save it anew."
            )
        raise ModelFormatError(f"{meta_path} is not a {FORMAT} file.")
    return meta


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a safetensors file (its table is checked against its size)."""
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, TypeError) as error:
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelFormatError(
            f"{path}: not a readable tensors file ({text})."
        ) from None


class _Problem(Exception):
    """One inconsistency between ``model.json`` and the tensors (a message)."""


def _array(tensors: dict, key: str) -> np.ndarray:
    if key not in tensors:
        raise _Problem(f"the tensor {key!r} is missing")
    return np.array(tensors[key])


def _check_weights(meta: dict, tensors: dict) -> None:
    """Check the network's tensors against ``model.json``; raise _Problem."""
    n = meta.get("n_coefs")
    if type(n) is not int or n < 1:
        raise _Problem(f"n_coefs is {n!r}, expected a positive integer")
    fitted = meta.get("fitted")
    if not isinstance(fitted, dict):
        raise _Problem("'fitted' is not a mapping")
    width = fitted.get("n_features_in_")
    dtypes = set()
    for i in range(n):
        for name in (f"coefs.{i}", f"intercepts.{i}"):
            if name not in tensors:
                raise _Problem(f"the tensor {name!r} is missing ({n} layers listed)")
            array = tensors[name]
            dtypes.add(array.dtype)
            if array.dtype not in (np.float32, np.float64):
                raise _Problem(f"{name} is {array.dtype}, expected float32 or float64")
            if not np.isfinite(array).all():
                raise _Problem(f"{name} holds NaN or infinite values")
        coef, intercept = tensors[f"coefs.{i}"], tensors[f"intercepts.{i}"]
        if coef.ndim != 2 or coef.shape[0] != width:
            raise _Problem(
                f"coefs.{i} has shape {coef.shape}, expected ({width}, *) "
                + ("(n_features_in_)" if i == 0 else f"(the width of coefs.{i - 1})")
            )
        if intercept.shape != (coef.shape[1],):
            raise _Problem(
                f"intercepts.{i} has shape {intercept.shape}, expected "
                f"({coef.shape[1]},) as coefs.{i}"
            )
        width = coef.shape[1]
    if len(dtypes) > 1:
        raise _Problem(f"the layers mix dtypes {sorted(map(str, dtypes))}")
    hidden = [tensors[f"coefs.{i}"].shape[1] for i in range(n - 1)]
    sizes = meta.get("params", {}).get("hidden_layer_sizes")
    sizes = [sizes] if isinstance(sizes, int) else sizes
    if list(sizes or []) != hidden:
        raise _Problem(
            f"hidden_layer_sizes is {sizes!r} but the tensors' hidden widths are "
            f"{hidden}"
        )
    if fitted.get("n_outputs_") != width or fitted.get("n_layers_") != n + 1:
        raise _Problem(
            f"n_outputs_ {fitted.get('n_outputs_')!r} and n_layers_ "
            f"{fitted.get('n_layers_')!r} disagree with the tensors ({width} "
            f"outputs, {n + 1} layers)"
        )
    if "classes" in meta:
        classes = meta["classes"].get("values")
        binarizer = meta.get("label_binarizer") or {}
        if not isinstance(classes, list) or len(set(map(repr, classes))) < 2:
            raise _Problem(f"classes is {classes!r}, expected 2 or more labels")
        multilabel = binarizer.get("y_type_") == "multilabel-indicator"
        expected = 1 if len(classes) == 2 and not multilabel else len(classes)
        if width != expected:
            raise _Problem(
                f"{len(classes)} classes need {expected} output"
                f"{'s' if expected > 1 else ''}, the tensors have {width}"
            )


def _check_preprocessing(meta: dict, tensors: dict) -> None:
    """Check the preprocessing tensors' lengths and values; raise _Problem."""
    preprocessing = meta.get("preprocessing")
    if preprocessing is None:
        return
    if not isinstance(preprocessing, dict):
        raise _Problem("'preprocessing' is not a mapping")
    if preprocessing.get("kind") == "auto":
        prefix, width = "preprocess.", len(preprocessing.get("numeric") or [])
    else:
        prefix, width = "standardize.", preprocessing.get("n_features_in_")
        if width != meta["fitted"].get("n_features_in_"):
            raise _Problem(
                f"the scaler takes {width!r} features, the network "
                f"{meta['fitted'].get('n_features_in_')!r}"
            )
    for name, array in tensors.items():
        if not name.startswith(prefix):
            continue
        if array.shape != (width,):
            raise _Problem(f"{name} has shape {array.shape}, expected ({width},)")
        if not np.isfinite(array).all():
            raise _Problem(f"{name} holds NaN or infinite values")


def load_model(folder: str | Path):
    """Rebuild the estimator saved by :func:`save_model`; it predicts as the saved one.

    Only safetensors and JSON are read: no pickle. What they hold is checked
    against each other first (see the module's docstring).

    Parameters
    ----------
    folder : str or Path
        A folder holding ``model.safetensors`` and ``model.json`` (a run folder).

    Returns
    -------
    MLPClassifier, MLPRegressor or Pipeline
        A Pipeline ``(standardize, mlp)`` when the model was saved with its scaler.

    Raises
    ------
    ModelFormatError
        If the folder holds no model in this format, or its files disagree (one
        line naming the file and the problem).
    """
    folder = Path(folder)
    meta = _read_meta(folder)
    tensors = _read_tensors(folder / WEIGHTS_FILE)
    try:
        _check_weights(meta, tensors)
        _check_preprocessing(meta, tensors)
        return _build(meta, tensors)
    except _Problem as problem:
        raise ModelFormatError(
            f"{folder / META_FILE} disagrees with {WEIGHTS_FILE}: {problem}."
        ) from None
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        text = str(error).splitlines()[0] if str(error) else ""
        raise ModelFormatError(
            f"{folder / META_FILE}: cannot rebuild the model "
            f"({type(error).__name__}: {text})."
        ) from None


def _build(meta: dict, tensors: dict):
    """The estimator (or Pipeline) ``meta`` and ``tensors`` describe."""
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
    mlp._validate_params()  # values predict relies on (activation, ...)
    for key, value in meta["fitted"].items():
        if key == "feature_names_in_":
            value = np.asarray(value, dtype=object)
        elif key not in _FITTED:
            raise ValueError(f"unknown fitted attribute {key!r}")
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
