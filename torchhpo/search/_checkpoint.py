"""The checkpoint journal: a search's finished (candidate, fold) results, on disk.

A search with ``checkpoint=PATH`` appends each fused model's training result to a
journal file as soon as the model finishes, so a killed search loses at most the
models that were still training. Rerun with the same arguments and path, it loads
what the journal holds, trains only what is missing, and gives the ``cv_results_``
of an uninterrupted run; a finished search trains nothing. The journal is kept
after success.

Format: JSON lines. The first line is a header with a fingerprint of what decides
the results (the data and fit parameters, the estimator and dtype, the search
space, the CV splitter); each further line is one model's record: its candidate
index, fold index, a key (digest of its candidate's parameters and its fold's
indices) and its :class:`~torchhpo.engine.ModelResult`, arrays as base64 of their
raw bytes with dtype and shape, and the sha256 of those fields. Nothing is ever
unpickled. A journal whose header or keys disagree with the search is refused with
an error, never mixed in. A torn last line (the process died while writing it) is
dropped and overwritten; a record that fails its checksum (a flipped bit, an edited
dtype tag) is blanked and its model trained again, with a warning. One process
holds a journal at a time (a file lock); a second is refused with an error naming
the holder. Records are appended with one ``write`` each to a file opened in append
mode.

Records are flushed to the operating system as they are written (a killed process
loses nothing) and synced to disk at most every :data:`SYNC_INTERVAL` seconds and
on close.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import threading
import time
import warnings
from dataclasses import fields, is_dataclass
from pathlib import Path

import joblib
import numpy as np
import torch
from sklearn.base import BaseEstimator

from .._version import __version__
from ..engine import ModelResult, ModelState, OptimizerState
from ..neural_network import BaseMLP

FORMAT = "torchhpo-journal"
#: 2: each record carries the sha256 of its fields.
VERSION = 2

#: Seconds between ``fsync`` calls; every record is flushed when written.
SYNC_INTERVAL = 1.0

#: Search parameters that do not change what is trained (and so may change when a
#: search is resumed): scoring, parallelism, display, placement.
NOT_TRAINING = frozenset(
    {
        "estimator",
        "cv",
        "scoring",
        "n_jobs",
        "refit",
        "verbose",
        "pre_dispatch",
        "error_score",
        "return_train_score",
        "device",
        "dtype",
        "progress",
        "max_pack_size",
        "backend",
        "checkpoint",
    }
)


class CheckpointError(ValueError):
    """A checkpoint journal that cannot be used for this search (refused)."""


# -- fingerprints -------------------------------------------------------------------
def canonical(value):
    """Return a JSON-able form of ``value`` that is equal across processes.

    Estimators become their class and parameters, frozen SciPy distributions their
    name and arguments (not their random state), arrays a digest of their bytes.
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, np.generic):
        return canonical(value.item())
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        if data.dtype == object:
            return ["ndarray", [canonical(v) for v in data.ravel()], list(data.shape)]
        digest = hashlib.sha256(data.tobytes()).hexdigest()
        return ["ndarray", data.dtype.str, list(data.shape), digest]
    if isinstance(value, dict):
        return ["dict", sorted([str(k), canonical(v)] for k, v in value.items())]
    if isinstance(value, list | tuple):
        return [type(value).__name__, [canonical(v) for v in value]]
    if isinstance(value, torch.device | torch.dtype):
        return ["torch", str(value)]
    if isinstance(value, BaseEstimator):
        params = value.get_params(deep=False)
        if isinstance(value, BaseMLP):
            params.pop("device")  # results do not depend on it (but for rounding)
        return [_qualname(type(value)), canonical(params)]
    if hasattr(value, "dist") and hasattr(value, "args") and hasattr(value, "kwds"):
        # A frozen scipy.stats distribution; its random state is left out.
        name = getattr(value.dist, "name", _qualname(type(value.dist)))
        return ["distribution", name, canonical(value.args), canonical(value.kwds)]
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return ["callable", _qualname(value)]
    return ["object", _qualname(type(value)), joblib.hash(value)]


def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"


def digest(*values) -> str:
    """Return a hex digest of the canonical forms of ``values``."""
    text = json.dumps([canonical(v) for v in values], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def search_fingerprint(search, X, y, fit_params: dict) -> dict[str, str]:
    """Return digests of what decides a search's training results, by component.

    Parameters
    ----------
    search : BaseSearchCV
        Its estimator, dtype, CV splitter and space (every constructor parameter
        not in :data:`NOT_TRAINING`: ``param_grid``, ``param_distributions``,
        ``n_iter``, ``random_state``, ...).
    X, y : array-like
        The search's data.
    fit_params : dict
        Parameters routed to the estimator's ``fit`` (``sample_weight``).
    """
    params = search.get_params(deep=False)
    space = {k: v for k, v in params.items() if k not in NOT_TRAINING}
    return {
        "data": digest(_data_form(X), _data_form(y), fit_params),
        "estimator": digest(search.estimator, search.dtype),
        "space": digest(space),
        "cv": digest(search.cv),
    }


def _data_form(value):
    """Arrays as NumPy (no copy when already), anything else for joblib.hash."""
    if value is None or isinstance(value, np.ndarray):
        return value
    try:
        array = np.asarray(value)
    except Exception:
        return ["object", joblib.hash(value)]
    if array.dtype == object:
        return ["object", joblib.hash(value)]
    return array


def model_key(parameters: dict, train: np.ndarray, test: np.ndarray) -> str:
    """Return the key of one (candidate, fold) model: its parameters and fold."""
    return digest(parameters, np.asarray(train), np.asarray(test))[:32]


# -- records ------------------------------------------------------------------------
def _encode(value):
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value)
        return {
            "__array__": data.dtype.str,
            "shape": list(data.shape),
            "data": base64.b64encode(data.tobytes()).decode("ascii"),
        }
    if is_dataclass(value):
        return {f.name: _encode(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _array(obj) -> np.ndarray:
    dtype = np.dtype(obj["__array__"])
    if dtype.kind not in "fiub":
        raise CheckpointError(f"unexpected array dtype {dtype} in a journal record")
    raw = base64.b64decode(obj["data"])
    return np.frombuffer(raw, dtype=dtype).reshape(obj["shape"]).copy()


def encode_result(result: ModelResult) -> dict:
    """Return the JSON-able form of a model's result."""
    return _encode(result)


def _decode_state(obj: dict | None) -> ModelState | None:
    if obj is None:
        return None
    state = dict(obj)
    for name in ("coefs", "intercepts", "best_coefs", "best_intercepts"):
        if state.get(name) is not None:
            state[name] = [_array(a) for a in state[name]]
    if state["optimizer"] is not None:
        opt = dict(state["optimizer"])
        opt["first"] = [_array(a) for a in opt["first"]]
        if opt["second"] is not None:
            opt["second"] = [_array(a) for a in opt["second"]]
        state["optimizer"] = OptimizerState(**opt)
    return ModelState(**state)


def decode_result(obj: dict) -> ModelResult:
    """Rebuild a :class:`ModelResult` from :func:`encode_result`'s output."""
    return ModelResult(
        **{
            **obj,
            "state": _decode_state(obj["state"]),
            "resume": _decode_state(obj.get("resume")),
        }
    )


_RECORD_KEYS = frozenset({"candidate", "fold", "key", "result", "sha256"})


def _parse(line: bytes):
    """Return the JSON value of ``line``, or None if it does not parse."""
    try:
        return json.loads(line)
    except ValueError:
        return None


def _checksum(record: dict) -> str:
    """The sha256 of a record's fields but its checksum, in their written form."""
    body = {k: v for k, v in record.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()


def _valid(record) -> bool:
    """Whether a parsed line is a whole record whose checksum matches."""
    return (
        isinstance(record, dict)
        and _RECORD_KEYS <= record.keys()
        and type(record["candidate"]) is int
        and type(record["fold"]) is int
        and record["sha256"] == _checksum(record)
    )


def _header_prefix(raw: bytes) -> bool:
    """Whether ``raw`` is the start of a header line cut short."""
    start = json.dumps({"format": FORMAT}).encode()[:-1]
    return raw.startswith(start) or start.startswith(raw)


def _holder() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


# -- the journal file ---------------------------------------------------------------
class Journal:
    """An append-only file of (candidate, fold) results with a fingerprint header.

    Use :meth:`open`; then :meth:`get` what a previous run left and :meth:`append`
    results as they finish (thread-safe); :meth:`close` at the end. One process at
    a time holds a journal: it is locked while open (``flock``), and who holds it
    is written beside it (``PATH.owner``) for the error a second process gets.
    """

    def __init__(self, path: Path, fd: int, records: dict, fingerprint: dict) -> None:
        self.path = path
        self._fd = fd
        self._records = records
        self.fingerprint = fingerprint
        self._lock = threading.Lock()
        self._last_sync = time.monotonic()

    @classmethod
    def open(cls, path: str | os.PathLike, fingerprint: dict[str, str]) -> Journal:
        """Open the journal at ``path``, creating it or checking it is this search's.

        Raises
        ------
        ValueError
            If the file is not a journal, was written for another search, or is
            open in another process.
        """
        path = Path(path)
        if path.parent != Path():
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as error:
            raise CheckpointError(
                f"The checkpoint journal {path} cannot be opened: {error.strerror}"
            ) from error
        try:
            cls._claim(path, fd)
            records: dict = {}
            raw = _read_all(fd)
            end = cls._read(path, raw, fingerprint, records) if raw else 0
            os.ftruncate(fd, end)  # drop a torn last line, if any
            if end == 0:
                cls._write_header(fd, fingerprint)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, records, fingerprint)

    @staticmethod
    def _claim(path: Path, fd: int) -> None:
        """Lock the journal for this process, or say who holds it."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            return
        owner = path.with_name(path.name + ".owner")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = owner.read_text().strip() or "another process"
            except OSError:
                holder = "another process"
            raise CheckpointError(
                f"The checkpoint journal {path} is in use by {holder}: one search "
                "writes a journal at a time. Wait for it to finish, or pass another "
                "checkpoint path."
            ) from None
        try:
            owner.unlink(missing_ok=True)  # never write through a planted link
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            descriptor = os.open(owner, flags, 0o644)
            with os.fdopen(descriptor, "w") as file:
                file.write(_holder() + "\n")
        except OSError:
            pass  # only the message of a second process would be poorer

    @staticmethod
    def _write_header(fd: int, fingerprint: dict) -> None:
        header = {
            "format": FORMAT,
            "version": VERSION,
            "torchhpo": __version__,
            "fingerprint": fingerprint,
        }
        _write_all(fd, json.dumps(header).encode() + b"\n")
        os.fsync(fd)

    @staticmethod
    def _read(path: Path, raw: bytes, fingerprint: dict, records: dict) -> int:
        """Check the header, load records; return the end of the last whole line."""
        first, newline, _ = raw.partition(b"\n")
        header = _parse(first) if newline else None
        if header is None and _header_prefix(raw):
            return 0  # killed while writing the header: start afresh
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise CheckpointError(
                f"{path} is not a torchhpo checkpoint journal; pass the path of a "
                "journal, or of a file that does not exist yet."
            )
        if header.get("version") != VERSION:
            raise CheckpointError(
                f"The checkpoint journal {path} has format version "
                f"{header.get('version')!r}; this torchhpo reads version {VERSION}. "
                "Delete it to start the search over, or pass another path."
            )
        theirs = header.get("fingerprint")
        theirs = theirs if isinstance(theirs, dict) else {}
        differs = [k for k in fingerprint if theirs.get(k) != fingerprint[k]]
        if differs:
            raise CheckpointError(
                f"The checkpoint journal {path} was written by another search: its "
                f"{', '.join(differs)} differ{'s' if len(differs) == 1 else ''} from "
                "this search's. Resuming would mix results of different searches; "
                "pass another checkpoint path, or delete the file to start over."
            )
        # Every whole record ends with "\n": a piece after the last one is torn, and
        # so is a last line that does not parse.
        lines = raw.split(b"\n")
        end = len(raw) - len(lines[-1])
        body = lines[1:-1]
        offset = len(lines[0]) + 1
        dropped = []
        for number, line in enumerate(body, start=2):
            record = _parse(line)
            if _valid(record):
                records[record["candidate"], record["fold"]] = record
            elif number == len(body) + 1 and record is None:
                end -= len(line) + 1  # torn: the process died writing it
            elif line.strip():
                # A record that fails its checksum is blanked in place (the
                # file's other offsets stay) and its model trained again.
                dropped.append((number, offset, len(line)))
            offset += len(line) + 1
        if dropped:
            _blank(path, [(offset, size) for _, offset, size in dropped])
            numbers = ", ".join(str(number) for number, _, _ in dropped)
            warnings.warn(
                f"The checkpoint journal {path} has {len(dropped)} damaged "
                f"record{'s' if len(dropped) > 1 else ''} (line {numbers}: not a "
                "record, or its checksum does not match); dropped, and their "
                "models are trained again.",
                RuntimeWarning,
                stacklevel=2,
            )
        return end

    def __len__(self) -> int:
        """Number of results a previous run left."""
        return len(self._records)

    def get(self, candidate: int, fold: int, key: str) -> ModelResult | None:
        """Return the journaled result of (candidate, fold), or None if missing.

        Raises
        ------
        ValueError
            If the journal's model there has other parameters or another fold.
        """
        record = self._records.get((candidate, fold))
        if record is None:
            return None
        if record["key"] != key:
            raise CheckpointError(
                f"The checkpoint journal {self.path} holds a result for candidate "
                f"{candidate}, fold {fold} trained with other parameters or on "
                "another CV split than this search's. Resuming needs the same "
                "candidates and splits: fix random_state (of RandomizedSearchCV, "
                "and of a shuffling cv), or pass another checkpoint path."
            )
        try:
            return decode_result(record["result"])
        except (CheckpointError, KeyError, TypeError, ValueError) as error:
            raise CheckpointError(
                f"The checkpoint journal {self.path} holds an unreadable result for "
                f"candidate {candidate}, fold {fold} ({type(error).__name__}: "
                f"{error}); delete it to start the search over."
            ) from error

    def append(self, candidate: int, fold: int, key: str, result: ModelResult) -> None:
        """Write one model's result (flushed at once, synced now and then).

        The record is one ``write`` to a file opened for appending, so it lands
        whole at the end of the file.
        """
        record = {
            "candidate": candidate,
            "fold": fold,
            "key": key,
            "result": encode_result(result),
        }
        record["sha256"] = _checksum(record)
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            _write_all(self._fd, line)
            now = time.monotonic()
            if now - self._last_sync >= SYNC_INTERVAL:
                os.fsync(self._fd)
                self._last_sync = now

    def close(self) -> None:
        """Sync and close the file, releasing its lock."""
        with self._lock:
            if self._fd < 0:
                return
            try:
                os.fsync(self._fd)
                owner = self.path.with_name(self.path.name + ".owner")
                try:
                    if owner.read_text().strip() == _holder():
                        owner.unlink()
                except OSError:
                    pass
            finally:
                os.close(self._fd)
                self._fd = -1


def _blank(path: Path, spans: list[tuple[int, int]]) -> None:
    """Overwrite ``spans`` of the file with spaces (the journal's fd appends)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        for offset, size in spans:
            os.pwrite(fd, b" " * size, offset)
    finally:
        os.close(fd)


def _read_all(fd: int) -> bytes:
    chunks = []
    position = 0
    while chunk := os.pread(fd, 1 << 20, position):
        chunks.append(chunk)
        position += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
