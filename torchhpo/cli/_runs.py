"""The run folder: what ``torchhpo run`` leaves behind, and its no-overwrite rule.

Files (all written after the search has finished, so a failed run leaves none):

* ``cv_results.csv``: ``cv_results_``, one row per candidate, its keys as columns in
  their order; tuples and ``params`` as JSON, masked (absent) values empty;
* ``best_params.json``: ``best_params_`` with the config's parameter names;
* ``model.safetensors`` + ``model.json``: the refitted best model (``_model_io``);
* ``config.yaml``: the config as run (defaults filled in, data paths absolute);
* ``plots/*.png``: see ``_plots``;
* ``run.json``: when, how long, the best candidate, and the list of files.

An existing, non-empty folder is refused unless ``force`` is given; then the files
its ``run.json`` lists are replaced (nothing else in the folder is touched).

A run claims its folder before training (:meth:`RunFolder.claim`: a lock file,
``.torchhpo.lock``, naming the holder), so a second run given the same folder
stops at once instead of after its search. The files are written into a fresh
staging folder beside the target and renamed into place, ``run.json`` last; names
are replaced, never followed, so a link planted in an old run folder cannot
redirect a write. When writing fails, the staging folder is kept (with the
results written before the failure; else ``cv_results.csv`` and
``best_params.json`` go to a new folder in the system's temporary folder) and the
error names it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import yaml

from ._build import plain_name
from ._schema import RunConfig

MANIFEST = "run.json"
LOCK = ".torchhpo.lock"


class RunFolderExists(FileExistsError):
    """The output folder holds files and ``--force`` was not given, or another run
    is writing it."""


def _holder() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


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
    if path.is_dir() and not force and any(p.name != LOCK for p in path.iterdir()):
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
    """Write one run's files, staged beside ``path``, and list them in ``run.json``.

    Parameters
    ----------
    path : Path
        The run folder (created on :meth:`claim`).
    force : bool
        Overwrite an existing run.

    Attributes
    ----------
    staging : Path or None
        Where the files are written until :meth:`finish` moves them into ``path``.
    """

    def __init__(self, path: Path, force: bool = False):
        self.path = Path(path)
        self.force = force
        self.files: list[Path] = []
        self.staging: Path | None = None
        self._lock: int | None = None
        self._created = False
        self._moving = False

    def claim(self) -> RunFolder:
        """Check the folder and lock it for this run, before any training.

        Raises
        ------
        RunFolderExists
            If the folder holds a run and ``force`` is False, or another run
            holds it (the message names that run's process and host).
        """
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"{self.path} exists and is not a folder.")
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        descriptor = os.open(self.path / LOCK, flags, 0o644)
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(descriptor, 200, 0).decode(errors="replace").strip()
                os.close(descriptor)
                raise RunFolderExists(
                    f"the run folder {self.path} is being written by another run "
                    f"({holder or 'holder unknown'}); wait for it, or pass --out to "
                    "write elsewhere."
                ) from None
        self._lock = descriptor
        try:
            check_out_dir(self.path, self.force)  # under the lock: what it found stays
        except BaseException:
            self.release()
            raise
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (_holder() + "\n").encode(), 0)
        return self

    def release(self) -> None:
        """Unlock the folder (its lock file goes); remove the folder if this run
        created it and wrote nothing into it."""
        if self._lock is None:
            return
        with contextlib.suppress(OSError):
            (self.path / LOCK).unlink()
            if self._created and not any(self.path.iterdir()):
                self.path.rmdir()
        os.close(self._lock)
        self._lock = None

    def open(self) -> RunFolder:
        """Create the staging folder the files are written into (claiming first)."""
        if self._lock is None:
            self.claim()
        parent = self.path.resolve().parent
        self.staging = Path(
            tempfile.mkdtemp(prefix=f".{self.path.name}.partial-", dir=parent)
        )
        return self

    @property
    def root(self) -> Path:
        """The folder files are written into now (the staging folder once open)."""
        return self.staging if self.staging is not None else self.path

    def add(self, *paths: Path) -> None:
        """Record files written into the folder by others (model, plots)."""
        self.files.extend(Path(p) for p in paths)

    def write_cv_results(self, cv_results: Mapping) -> Path:
        path = self.root / "cv_results.csv"
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
        path = self.root / name
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
        path = self.root / "config.yaml"
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
        """Write ``run.json`` (``info`` plus the list of files) and move the staged
        files into the run folder, ``run.json`` last; return its final path."""
        names = [p.relative_to(self.root).as_posix() for p in self.files]
        self.write_json(MANIFEST, {**info, "files": names})
        self.files.pop()  # run.json is not in its own list
        previous = _listed(self.path / MANIFEST)
        self._moving = True
        _remove_inside(self.path, MANIFEST)  # the folder is not a whole run now
        for name in names:
            _move_inside(self.root / name, self.path, name)
        for name in previous:
            if name not in names:
                _remove_inside(self.path, name)
        _move_inside(self.root / MANIFEST, self.path, MANIFEST)
        shutil.rmtree(self.staging)
        self.staging = None
        self.files = [self.path / name for name in names]
        self.release()
        return self.path / MANIFEST

    def failed(
        self,
        error: BaseException,
        cv_results: Mapping | None = None,
        best_params: Mapping | None = None,
    ) -> str:
        """Release the folder after a failed write; return the message to show.

        The staged files written before the failure are kept and named; where
        there are none (the staging folder could not be made), ``cv_results`` and
        ``best_params`` are written into a new folder of the system's temporary
        folder, on another disk as often as not.
        """
        moved = self._moving
        kept = [p.name for p in self.files if p.exists()]
        self.release()
        if not kept:
            if self.staging is not None:
                shutil.rmtree(self.staging, ignore_errors=True)
                self.staging = None
            if cv_results is not None:
                kept = self._rescue(cv_results, best_params)
        if kept:
            where = (
                f"the results written before the failure ({', '.join(kept)}) are "
                f"kept in {self.staging}"
            )
        else:
            where = "nothing could be kept"
        state = (
            "the run folder holds part of the new run, without run.json"
            if moved
            else "the run folder was not changed"
        )
        return (
            f"writing the run folder {self.path} failed ({type(error).__name__}: "
            f"{error}); {where}; {state}."
        )

    def _rescue(self, cv_results: Mapping, best_params: Mapping | None) -> list[str]:
        """Write the search's results into a new temporary folder; their names."""
        self.files = []
        try:
            self.staging = Path(
                tempfile.mkdtemp(prefix=f"torchhpo-{self.path.name}-results-")
            )
            self.write_cv_results(cv_results)
            if best_params is not None:
                self.write_best_params(best_params)
        except Exception:
            pass
        return [p.name for p in self.files if p.exists()]


def _listed(manifest: Path) -> list[str]:
    """The files an existing ``run.json`` lists (none if it is not readable)."""
    try:
        info = os.lstat(manifest)
        if not stat.S_ISREG(info.st_mode):
            return []
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


def _inside(root: Path, name: str) -> Path | None:
    """``root / name`` if no folder on the way is a link (or leaves ``root``)."""
    parts = Path(name).parts
    if not parts or Path(name).is_absolute() or ".." in parts:
        return None
    folder = root
    for part in parts[:-1]:
        folder = folder / part
        try:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):  # a link, a file
                return None
        except FileNotFoundError:
            return folder.parent / Path(
                *parts[len(folder.relative_to(root).parts) - 1 :]
            )
    return root / name


def _remove_inside(root: Path, name: str) -> None:
    """Remove the file (or link: never its target) ``name`` inside ``root``."""
    path = _inside(root, name)
    if path is None:
        return
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            path.unlink()


def _move_inside(source: Path, root: Path, name: str) -> None:
    """Rename ``source`` to ``root / name``, replacing what is there, following no
    link: a link on the way (``plots`` pointing elsewhere) is replaced by a folder.
    """
    folder = root
    for part in Path(name).parts[:-1]:
        folder = folder / part
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            folder.mkdir()
            continue
        if not stat.S_ISDIR(info.st_mode):
            folder.unlink()  # a link or a file where the run's folder goes
            folder.mkdir()
    target = folder / Path(name).name
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(target).st_mode):
            raise IsADirectoryError(
                f"{target} is a folder; the run writes a file there"
            )
    os.replace(source, target)  # replaces a link itself, never what it points to


def read_cv_results(path: Path) -> tuple[list[str], list[list[str]]]:
    """Return the header and rows of a run's ``cv_results.csv``."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]
