"""checkpoint=PATH: a killed search resumes, a finished one trains nothing, a journal
of another search is refused. Each test compares against an uninterrupted run of
the same search in the same test (same process settings: one torch thread).
"""

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import loguniform
from sklearn.datasets import load_digits

from torchhpo import GridSearchCV, MLPClassifier, RandomizedSearchCV
from torchhpo.engine import DeviceData, Hyperparams, ModelTask, train_models
from torchhpo.search._checkpoint import decode_result, encode_result

from ._helpers import EngineSpy, assert_same_scores, forbid_training

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

ROOT = Path(__file__).resolve().parents[2]
N_MODELS = 12  # 4 candidates x 3 folds


def load_data():
    """Three digit classes, 150 samples (also loaded by the killed subprocess)."""
    X, y = load_digits(n_class=3, return_X_y=True)
    return X[:150] / 16.0, y[:150]


def make_search(checkpoint, **options):
    """The search under test (also built by the killed subprocess)."""
    return GridSearchCV(
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=15, random_state=0),
        {"alpha": [1e-4, 1e-2], "solver": ["adam", "sgd"]},
        cv=3,
        progress=False,
        max_pack_size=1,  # one model per pack: the journal grows model by model
        checkpoint=checkpoint,
        **options,
    )


@pytest.fixture(scope="module")
def uninterrupted():
    return make_search(None).fit(*load_data()).cv_results_


def records(path):
    """The journal's parsed lines after the header."""
    lines = Path(path).read_bytes().split(b"\n")
    assert lines[-1] == b""  # every line whole
    header, *rest = (json.loads(line) for line in lines[:-1])
    assert header["format"] == "torchhpo-journal"
    return rest


# The subprocess trains STOP models, then hangs until signalled.
KILLED_SEARCH = textwrap.dedent(
    """
    import signal, sys, time
    import torch
    # Ctrl-C raises KeyboardInterrupt even where SIGINT came in ignored (a
    # background job of a non-interactive shell).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    torch.set_num_threads(1)
    import torchhpo.search._scheduler as scheduler
    from tests.search.test_checkpoint import load_data, make_search

    STOP = int(sys.argv[2])
    train_models = scheduler.train_models

    def hanging_after_stop(*args, on_result, **kwargs):
        finished = []

        def deliver(index, result):
            on_result(index, result)  # journaled
            finished.append(index)
            if len(finished) == STOP:
                print("hanging", flush=True)
                time.sleep(120)

        return train_models(*args, on_result=deliver, **kwargs)

    scheduler.train_models = hanging_after_stop
    make_search(sys.argv[1]).fit(*load_data())
    """
)


def run_until_hanging(path, stop, sig):
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_SEARCH, str(path), str(stop)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "hanging", proc.stderr.read()
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_killed_search_resumes_training_only_what_is_missing(
    tmp_path, monkeypatch, uninterrupted, sig
):
    path = tmp_path / "search.journal"
    proc = run_until_hanging(path, stop=5, sig=sig)
    assert proc.returncode != 0
    if sig == signal.SIGINT:
        assert "KeyboardInterrupt" in proc.stderr.read()
    assert len(records(path)) == 5

    spy = EngineSpy(monkeypatch)
    resumed = make_search(path).fit(*load_data())
    assert spy.n_models == N_MODELS - 5
    assert_same_scores(resumed.cv_results_, uninterrupted)
    assert len(records(path)) == N_MODELS  # kept, now complete


@pytest.mark.slow
def test_finished_search_reruns_without_training(tmp_path, monkeypatch, uninterrupted):
    path = tmp_path / "search.journal"
    first = make_search(path).fit(*load_data())
    assert_same_scores(first.cv_results_, uninterrupted)
    assert len(records(path)) == N_MODELS
    forbid_training(monkeypatch)
    again = make_search(path).fit(*load_data())
    assert_same_scores(again.cv_results_, uninterrupted)
    np.testing.assert_array_equal(
        again.cv_results_["mean_fit_time"], first.cv_results_["mean_fit_time"]
    )
    for a, b in zip(
        again.best_estimator_.coefs_, first.best_estimator_.coefs_, strict=True
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_torn_last_record_is_dropped_and_retrained(
    tmp_path, monkeypatch, uninterrupted
):
    path = tmp_path / "search.journal"
    make_search(path).fit(*load_data())
    raw = path.read_bytes()
    path.write_bytes(raw[:-40])  # the process died while writing the last record

    spy = EngineSpy(monkeypatch)
    resumed = make_search(path).fit(*load_data())
    assert spy.n_models == 1
    assert_same_scores(resumed.cv_results_, uninterrupted)
    assert len(records(path)) == N_MODELS  # the torn line was overwritten


@pytest.mark.slow
def test_journal_of_other_data_or_space_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "search.journal"
    X, y = load_data()
    make_search(path).fit(X, y)
    before = path.read_bytes()
    forbid_training(monkeypatch)

    with pytest.raises(ValueError, match="another search: its data differs"):
        make_search(path).fit(X * 0.5, y)
    other_space = make_search(path).set_params(param_grid={"alpha": [1e-3]})
    with pytest.raises(ValueError, match="its space differs"):
        other_space.fit(X, y)
    other_estimator = make_search(path).set_params(estimator__max_iter=7)
    with pytest.raises(ValueError, match="its estimator differs"):
        other_estimator.fit(X, y)
    assert path.read_bytes() == before  # never mixed in


def test_other_candidates_under_the_same_header_are_refused(tmp_path):
    # random_state=None: the rerun draws other candidates of the same space.
    path = tmp_path / "random.journal"

    def search():
        return RandomizedSearchCV(
            MLPClassifier(hidden_layer_sizes=(4,), max_iter=3),
            {"alpha": loguniform(1e-5, 1e-1)},
            n_iter=2,
            cv=2,
            progress=False,
            checkpoint=path,
        )

    X, y = load_data()
    search().fit(X, y)
    with pytest.raises(ValueError, match="other parameters or on another CV split"):
        search().fit(X, y)


def test_a_file_that_is_not_a_journal_is_refused(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a torchhpo checkpoint journal"):
        make_search(path).fit(*load_data())
    assert path.read_text() == "a,b\n1,2\n"


def test_records_round_trip_exactly():
    X, y = load_data()
    data = DeviceData.from_numpy(
        X, np.eye(3)[y], target_kind="multiclass", loss="log_loss", dtype=torch.float64
    )
    tasks = [
        ModelTask(Hyperparams((5,), max_iter=4, early_stopping=True), np.arange(120)),
        ModelTask(Hyperparams((5,), solver="sgd", max_iter=3), np.arange(100), seed=3),
    ]
    for result in train_models(data, tasks, keep_optimizer_state=True, n_workers=1):
        encoded = json.loads(json.dumps(encode_result(result)))
        assert repr(decode_result(encoded)) == repr(result)


def test_torn_header_starts_afresh_and_a_damaged_record_is_retrained(
    tmp_path, monkeypatch, uninterrupted
):
    path = tmp_path / "search.journal"
    path.write_bytes(b'{"format": "torchhpo-jour')  # killed while creating it
    make_search(path).fit(*load_data())
    assert len(records(path)) == N_MODELS

    lines = path.read_bytes().split(b"\n")
    lines[3] = lines[3][:50]  # not the last record: damage, not a torn write
    path.write_bytes(b"\n".join(lines))
    spy = EngineSpy(monkeypatch)
    with pytest.warns(RuntimeWarning, match=r"damaged record \(line 4"):
        resumed = make_search(path).fit(*load_data())
    assert spy.n_models == 1
    assert_same_scores(resumed.cv_results_, uninterrupted)


# -- what is read back is what was written -------------------------------------------


def _flip_bit(line: bytes) -> bytes:
    """One bit of a base64 array payload flipped (still valid base64 and JSON)."""
    start = line.index(b'"data":"') + len(b'"data":"') + 5
    return line[:start] + bytes([line[start] ^ 0x01]) + line[start + 1 :]


def _retag(line: bytes) -> bytes:
    return line.replace(b'"__array__":"<f4"', b'"__array__":"<f8"', 1)


def _unhashable(line: bytes) -> bytes:
    record = json.loads(line)
    record["candidate"] = [record["candidate"]]
    return json.dumps(record, separators=(",", ":")).encode()


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_flip_bit, _retag, _unhashable])
def test_a_record_changed_on_disk_is_dropped_and_retrained(
    tmp_path, monkeypatch, uninterrupted, damage
):
    path = tmp_path / "search.journal"
    make_search(path).fit(*load_data())
    lines = path.read_bytes().split(b"\n")
    changed = damage(lines[2])
    assert changed != lines[2] and json.loads(changed)  # still a parsed record
    lines[2] = changed
    path.write_bytes(b"\n".join(lines))

    spy = EngineSpy(monkeypatch)
    with pytest.warns(RuntimeWarning, match=rf"{path.name} has 1 damaged record"):
        resumed = make_search(path).fit(*load_data())
    assert spy.n_models == 1  # only the damaged record's model
    assert_same_scores(resumed.cv_results_, uninterrupted)


HOLDER = textwrap.dedent(
    """
    import sys
    from torchhpo.search._checkpoint import Journal
    journal = Journal.open(sys.argv[1], {"data": "x"})
    print("open", flush=True)
    sys.stdin.readline()
    journal.close()
    """
)


@pytest.mark.slow
def test_a_second_process_is_refused_naming_the_holder(tmp_path):
    from torchhpo.search._checkpoint import Journal

    path = tmp_path / "search.journal"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(ValueError, match=rf"in use by pid {holder.pid} on "):
            Journal.open(path, {"data": "x"})
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    Journal.open(path, {"data": "x"}).close()  # free again once the holder closed


@pytest.mark.parametrize(
    "content",
    [
        b'{"format": "torchhpo-journal", "version": 2, "fingerprint": []}\n',
        b'{"format": "torchhpo-journal", "version": 2, "fingerprint": 7}\n',
        b'{"format": "torchhpo-journal", "version": 1}\n',
        b'["format", "torchhpo-journal"]\n',
        b"\xff\xfe\x00\n",
    ],
)
def test_a_damaged_header_is_refused_naming_the_file(tmp_path, content):
    from torchhpo.search._checkpoint import Journal

    path = tmp_path / "search.journal"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=str(path)):
        Journal.open(path, {"data": "x"})


def test_a_record_with_a_valid_checksum_but_bad_fields_names_the_file(tmp_path):
    from torchhpo.search._checkpoint import Journal, _checksum

    path = tmp_path / "search.journal"
    record = {"candidate": 0, "fold": 0, "key": "k", "result": {"state": 3}}
    record["sha256"] = _checksum(record)
    header = {"format": "torchhpo-journal", "version": 2, "fingerprint": {}}
    path.write_text(json.dumps(header) + "\n" + json.dumps(record) + "\n")
    journal = Journal.open(path, {})
    try:
        with pytest.raises(ValueError, match=f"{path} holds an unreadable result"):
            journal.get(0, 0, "k")
    finally:
        journal.close()
