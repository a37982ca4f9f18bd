"""``torchhpo export``: a run folder's best model as an ONNX graph.

The graph is the model's :meth:`~torchhpo.MLPClassifier.to_torch` module with as
much of the run's preprocessing put in front of it as a tensor graph can hold:

* ``preprocessing: none``: the graph takes the raw feature columns;
* ``standardize``: the scaler is folded into the first layer (``W / scale`` and
  ``b - (mean / scale) @ W``), so the graph takes the raw columns;
* ``auto`` with numeric columns only: the median imputation becomes a
  ``where(isnan(x), median, x)`` in front of the folded layer; the graph takes the
  raw columns, missing values as NaN;
* ``auto`` with categorical columns: strings cannot enter a tensor graph, so the
  graph takes the *encoded* features (the names in the ONNX metadata,
  ``input_features``), and the export says so: impute and one-hot encode first.

The graph's input is ``X`` (``(n_samples, n_features)``, in the dtype the model
trained in, float32 by default, or ``--dtype``), its output ``probabilities``
(classifier: ``predict_proba``; the class labels are in the metadata, ``classes``)
or ``prediction`` (regressor: ``predict``). The weights are stored inside the one
``.onnx`` file (no ``.onnx.data`` beside it): an MLP is far below the 2 GB protobuf
limit that makes ONNX keep weights in an external file.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.base import is_classifier
from torch import nn

from ..neural_network import to_torch_module
from ._model_io import load_model, load_model_info, split_model


class ExportError(ValueError):
    """The model cannot be exported (a missing exporter, an existing file)."""


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote.

    Attributes
    ----------
    path : Path
        The ONNX file.
    output : str
        The graph's output name: ``probabilities`` or ``prediction``.
    input_features : list of str
        The graph's input columns, in order.
    raw_inputs : bool
        True when the graph takes the data file's raw columns (preprocessing inside
        the graph); False when it takes the encoded features.
    note : str
        One line on what the graph covers.
    """

    path: Path
    output: str
    input_features: list[str]
    raw_inputs: bool
    note: str


class _ImputeNaN(nn.Module):
    """Replace NaN in each column by a fixed value (a fitted median)."""

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("values", values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(torch.isnan(x), self.values, x)


def fold_standardization(
    module: nn.Sequential, mean: np.ndarray | None, scale: np.ndarray | None
) -> nn.Sequential:
    """Fold ``(x - mean) / scale`` into the first ``nn.Linear`` of ``module``.

    Parameters
    ----------
    module : torch.nn.Sequential
        A :meth:`to_torch` module (changed in place and returned).
    mean, scale : ndarray of shape (n_features,) or None
        The scaler's ``mean_`` and ``scale_`` (None: 0 and 1).

    Returns
    -------
    torch.nn.Sequential
    """
    first = module[0]
    weight = first.weight.detach()
    n_features = weight.shape[1]
    like = {"dtype": weight.dtype, "device": weight.device}
    mean_t = torch.zeros(n_features, **like) if mean is None else torch.tensor(mean)
    scale_t = torch.ones(n_features, **like) if scale is None else torch.tensor(scale)
    with torch.no_grad():
        folded = weight / scale_t.to(**like)
        first.bias.sub_(folded @ mean_t.to(**like))
        first.weight.copy_(folded)
    return module


def graph_module(
    estimator, dtype: str | torch.dtype | None = None
) -> tuple[nn.Module, list[str] | None, str]:
    """Return the module to export, its input names if encoded, and a note.

    Parameters
    ----------
    estimator : MLP or Pipeline
        A model as :func:`~torchhpo.cli.load_model` returns it.
    dtype : {"float32", "float64"} or torch.dtype, optional
        The graph's dtype; default: the dtype the model trained in.

    Returns
    -------
    module : torch.nn.Module
        On the CPU, in evaluation mode.
    encoded_features : list of str or None
        None when the graph takes the raw columns; else the encoded feature names.
    note : str
        What the graph covers.
    """
    preprocessing, mlp = split_model(estimator)
    module = to_torch_module(mlp, device="cpu", dtype=dtype).eval()
    if preprocessing is None:
        return module, None, "the graph takes the raw feature columns."
    kind = preprocessing.kind
    if kind == "standardize":
        fold_standardization(module, preprocessing.mean, preprocessing.scale)
        return (
            module,
            None,
            "the graph takes the raw feature columns (standardization folded into "
            "the first layer).",
        )
    if not preprocessing.categorical:
        fold_standardization(module, preprocessing.mean, preprocessing.scale)
        median = torch.as_tensor(preprocessing.median, dtype=module[0].weight.dtype)
        return (
            nn.Sequential(_ImputeNaN(median), *module),
            None,
            "the graph takes the raw numeric columns, missing values as NaN "
            "(median imputation and standardization inside the graph).",
        )
    return (
        module,
        preprocessing.encoded_names(),
        "the graph does NOT include the preprocessing: the data has categorical "
        f"columns ({', '.join(preprocessing.categorical)}), which cannot enter a "
        "tensor graph. It takes the encoded features listed in the ONNX metadata "
        "'input_features' (numeric columns imputed and standardized, categories "
        "one-hot encoded), as torchhpo's saved preprocessing produces them: "
        "torchhpo.cli.load_model(RUN)[:-1].transform(data), whose "
        "get_feature_names_out() lists them.",
    )


def export_onnx(
    run_dir: str | Path,
    out: str | Path,
    *,
    force: bool = False,
    dtype: str | torch.dtype | None = None,
) -> ExportResult:
    """Export a run folder's best model to an ONNX file.

    Parameters
    ----------
    run_dir : str or Path
        A run folder written by ``torchhpo run``.
    out : str or Path
        The ONNX file to write.
    force : bool
        Overwrite an existing file.
    dtype : {"float32", "float64"} or torch.dtype, optional
        The graph's input and weight dtype; default: the dtype the model trained
        in (float32 unless its ``dtype`` parameter said otherwise).

    Returns
    -------
    ExportResult

    Raises
    ------
    ExportError
        If ``out`` exists (without ``force``) or the ONNX exporter (packages
        ``onnx`` and ``onnxscript``: ``pip install 'torchhpo[onnx]'``) is missing.
    ModelFormatError
        If the folder holds no saved model.
    """
    out = Path(out)
    if out.exists() and not force:
        raise ExportError(f"{out} exists; pass --force to overwrite it.")
    # The folder first: a damaged model is named whatever is installed.
    estimator = load_model(run_dir)
    info = load_model_info(run_dir)
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ExportError(
            f"ONNX export needs the packages onnx and onnxscript ({exc.name} is "
            "missing): pip install 'torchhpo[onnx]'."
        ) from exc
    try:
        module, encoded, note = graph_module(estimator, dtype)
    except ValueError as error:  # a dtype that is not float32 / float64
        raise ExportError(str(error).replace("'dtype' parameter", "--dtype")) from error
    features = encoded if encoded is not None else list(info.get("feature_names", []))
    _, mlp = split_model(estimator)
    dtype = next(module.parameters()).dtype
    example = torch.zeros(2, len(features) or mlp.n_features_in_, dtype=dtype)
    output = "probabilities" if is_classifier(mlp) else "prediction"
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)  # "torchvision is not installed", ...
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's own deprecation notes
            program = torch.onnx.export(
                module,
                (example,),
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                input_names=["X"],
                output_names=[output],
                dynamo=True,
                verbose=False,
            )
    finally:
        onnx_logger.setLevel(level)
    metadata = {
        "input_features": json.dumps(features),
        "raw_inputs": json.dumps(encoded is None),
        "note": note,
    }
    if is_classifier(mlp):
        metadata["classes"] = json.dumps(np.asarray(mlp.classes_).tolist())
    program.model.metadata_props.update(metadata)
    out.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(out), external_data=False)
    return ExportResult(out, output, features, encoded is None, note)
