"""The run folder: what ``torchhpo run`` leaves behind, and its no-overwrite rule.

Files (all written after the search has finished, so a failed run leaves none):

* ``cv_results.csv``: ``cv_results_``, one row per candidate, its keys as columns in
  their order; tuples and ``params`` as JSON, masked (absent) values empty;
* ``best_params.json``: ``best_params_`` with the config's parameter names;
* ``model.pt`` + ``model.json``: the refitted best model (see ``_model_io``);
* ``config.yaml``: the config as run (defaults filled in, data paths absolute);
* ``plots/*.png``: see ``_plots``;
* ``run.json``: when, how long, the best candidate, and the list of files.

An existing, non-empty folder is refused unless ``force`` is given; then the files
its ``run.json`` lists are removed first (nothing else in the folder is touched).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import yaml

from ._build import plain_name
from ._config import RunConfig

MANIFEST = "run.json"


class RunFolderExists(FileExistsError):
    """The output folder holds files and ``--force`` was not given."""


def check_out_dir(path: Path, force: bool) -> None:
    """Refuse a non-empty existing folder unless ``force``; refuse a file always.

    Raises
    ------
    RunFolderExists
        If ``path`` is a non-empty folder and ``force`` is False.
    NotADirectoryError
        If ``path`` is an existing file.
    """
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a folder.")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise RunFolderExists(
            f"the run folder {path} already exists; pass --force to overwrite it, "
            "or --out to write elsewhere."
        )


def _cell(value) -> str:
    """Format one ``cv_results_`` value for CSV."""
    if value is np.ma.masked or value is None:
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (tuple, list, Mapping)):
        return json.dumps(_jsonable(value))
    return str(value)


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class RunFolder:
    """Write one run's files into ``path`` and list them in ``run.json``.

    Parameters
    ----------
    path : Path
        The run folder (created on :meth:`open`).
    force : bool
        Overwrite an existing run.
    """

    def __init__(self, path: Path, force: bool = False):
        self.path = Path(path)
        self.force = force
        self.files: list[Path] = []

    def open(self) -> RunFolder:
        """Check the folder again (it may have appeared meanwhile) and prepare it."""
        check_out_dir(self.path, self.force)
        manifest = self.path / MANIFEST
        if manifest.is_file():
            try:
                previous = json.loads(manifest.read_text(encoding="utf-8"))["files"]
            except (ValueError, KeyError, TypeError):
                previous = []
            for name in [*previous, MANIFEST]:
                target = (self.path / name).resolve()
                if target.parent.is_relative_to(self.path.resolve()):
                    target.unlink(missing_ok=True)
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def add(self, *paths: Path) -> None:
        """Record files written into the folder by others (model, plots)."""
        self.files.extend(Path(p) for p in paths)

    def write_cv_results(self, cv_results: Mapping) -> Path:
        path = self.path / "cv_results.csv"
        keys = list(cv_results)
        n_rows = len(cv_results["params"])
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(keys)
            for i in range(n_rows):
                writer.writerow([_cell(cv_results[key][i]) for key in keys])
        self.add(path)
        return path

    def write_json(self, name: str, data) -> Path:
        path = self.path / name
        text = json.dumps(_jsonable(data), indent=2, allow_nan=True)
        path.write_text(text + "\n", encoding="utf-8")
        self.add(path)
        return path

    def write_best_params(self, best_params: Mapping) -> Path:
        """Write ``best_params_`` with the config's names (``alpha``, not
        ``mlp__alpha``)."""
        return self.write_json(
            "best_params.json", {plain_name(k): v for k, v in best_params.items()}
        )

    def write_config(self, config: RunConfig) -> Path:
        path = self.path / "config.yaml"
        header = (
            f"# The config of this run, as run: {config.source}\n"
            "# (defaults filled in, data paths absolute). Rerun it with\n"
            "#   torchhpo run config.yaml --out OTHER_FOLDER\n"
        )
        if config.overrides:
            header += "# Command-line overrides (applied in the body below):\n"
            header += "".join(f"#   {o}\n" for o in config.overrides)
        body = yaml.safe_dump(
            config.to_config(), sort_keys=False, default_flow_style=None
        )
        path.write_text(header + body, encoding="utf-8")
        self.add(path)
        return path

    def finish(self, info: dict) -> Path:
        """Write ``run.json`` (``info`` plus the list of files)."""
        files = [str(p.relative_to(self.path)) for p in self.files]
        return self.write_json(MANIFEST, {**info, "files": files})


def read_cv_results(path: Path) -> tuple[list[str], list[list[str]]]:
    """Return the header and rows of a run's ``cv_results.csv``."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]
