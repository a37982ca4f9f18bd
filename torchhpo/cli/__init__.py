"""The ``torchhpo`` command line: YAML configs in, run folders out.

Modules, in the order a run uses them:

* ``_config``: read a YAML config and check every key (``load_config``):
  ``_schema`` (what a config may hold: its tables and records), ``_yaml`` (the
  safe loader and the command line's overrides), ``_check_base``,
  ``_check_data`` and ``_check_search`` (the checks, section by section);
* ``_datasets``: load the dataset it names (bundled, CSV / NPY, synthetic);
* ``_build``: the estimator (a Pipeline when standardizing) and the search;
* ``_recorder``: the scorer that keeps each fold model's loss curve;
* ``_runs``: the run folder (files, no overwrite without ``--force``);
* ``_model_io``: the best model as tensors + JSON (no pickle);
* ``_columns``: the run's input columns (``columns.json``), and how ``predict``
  matches a file's columns to them by name;
* ``_plots``: the PNG plots (matplotlib, optional); ``_optuna_plots`` those of
  an Optuna run;
* ``_optuna``: ``search.kind: optuna`` (its study, and its trials as rows);
* ``_report``: the leaderboard;
* ``_preprocessing``: ``standardize`` / ``auto`` steps and their saved form;
* ``_export``: the best model as an ONNX graph (``export``);
* ``_runner``: what ``run`` and ``predict`` do;
* ``_info``: what ``info`` prints (versions, device, the CPU kernels' path);
* ``_main``: argument parsing (``torchhpo`` and ``python -m torchhpo``).
"""

from ._config import load_config
from ._export import ExportError, ExportResult, export_onnx
from ._main import main
from ._model_io import load_model, save_model
from ._runner import RunResult, predict, run
from ._schema import ConfigError, RunConfig

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
