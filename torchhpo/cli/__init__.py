"""The ``torchhpo`` command line: YAML configs in, run folders out.

Modules, in the order a run uses them:

* ``_config``: read a YAML config (safe loader) and check every key;
* ``_datasets``: load the dataset it names (bundled, CSV / NPY, synthetic);
* ``_build``: the estimator (a Pipeline when standardizing) and the search;
* ``_recorder``: the scorer that keeps each fold model's loss curve;
* ``_runs``: the run folder (files, no overwrite without ``--force``);
* ``_model_io``: the best model as tensors + JSON (no pickle);
* ``_columns``: the run's input columns (``columns.json``), and how ``predict``
  matches a file's columns to them by name;
* ``_plots``: the PNG plots (matplotlib, optional);
* ``_report``: the leaderboard;
* ``_preprocessing``: ``standardize`` / ``auto`` steps and their saved form;
* ``_export``: the best model as an ONNX graph (``export``);
* ``_runner``: what ``run`` and ``predict`` do;
* ``_info``: what ``info`` prints (versions, device, the CPU kernels' path);
* ``_main``: argument parsing (``torchhpo`` and ``python -m torchhpo``).
"""

from ._config import ConfigError, RunConfig, load_config
from ._export import ExportError, ExportResult, export_onnx
from ._main import main
from ._model_io import load_model, save_model
from ._runner import RunResult, predict, run

__all__ = [
    "ConfigError",
    "ExportError",
    "ExportResult",
    "RunConfig",
    "RunResult",
    "export_onnx",
    "load_config",
    "load_model",
    "main",
    "predict",
    "run",
    "save_model",
]
