"""``torchhpo export``: a run folder's best model as ONNX, checked with ONNX Runtime
against the saved model's own predictions (skipped without the ONNX packages)."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import load_iris

from torchhpo.cli import ExportError, export_onnx, load_model, main, run

from .conftest import tiny_config, write_config

pytestmark = [
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

DATA = Path(__file__).resolve().parents[1] / "data" / "penguins_like.csv"


@pytest.fixture
def exporters():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")


def _session(path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(tmp_path, **sections):
    config = tiny_config(**sections)
    config["search"]["space"] = {"hidden_layer_sizes": [[6]]}
    config["estimator"]["params"]["max_iter"] = 60
    path = write_config(tmp_path / "c.yaml", config)
    return run(path, out=tmp_path / "run", progress=False, plots=False)


@pytest.mark.slow
@pytest.mark.parametrize("preprocessing", ["standardize", "none"])
def test_raw_columns_with_standardization_folded(exporters, tmp_path, preprocessing):
    result = _run(tmp_path, preprocessing=preprocessing)
    exported = export_onnx(result.folder, tmp_path / "m.onnx", dtype="float64")
    assert exported.raw_inputs
    assert exported.input_features == result.dataset.feature_names
    X = load_iris().data
    (out,) = _session(exported.path).run(None, {"X": X})
    expected = load_model(result.folder).predict_proba(X)
    assert_allclose(out, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_auto_numeric_only_takes_raw_columns_with_nan(exporters, tmp_path):
    result = _run(tmp_path, preprocessing="auto")
    exported = export_onnx(result.folder, tmp_path / "m.onnx", dtype="float64")
    assert exported.raw_inputs and "median imputation" in exported.note
    X = load_iris().data.copy()
    X[::7, 2] = np.nan
    (out,) = _session(exported.path).run(None, {"X": X})
    frame = pd.DataFrame(X, columns=result.dataset.feature_names)
    expected = load_model(result.folder).predict_proba(frame)
    assert_allclose(out, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_auto_with_categories_takes_encoded_features_and_says_so(exporters, tmp_path):
    config = tiny_config(dataset={"file": str(DATA), "target": "species"})
    config["preprocessing"] = "auto"
    config["search"]["space"] = {"hidden_layer_sizes": [[6]]}
    path = write_config(tmp_path / "p.yaml", config)
    result = run(path, out=tmp_path / "run", progress=False, plots=False)
    exported = export_onnx(result.folder, tmp_path / "m.onnx", dtype="float64")
    assert not exported.raw_inputs
    assert "does NOT include the preprocessing" in exported.note
    assert "island_Dream" in exported.input_features
    model = load_model(result.folder)
    raw = result.dataset.X
    (out,) = _session(exported.path).run(None, {"X": model[0].transform(raw)})
    assert_allclose(out, model.predict_proba(raw), rtol=1e-10, atol=1e-12)
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(exported.path)).metadata_props}
    assert meta["raw_inputs"] == "false"
    assert "Gentoo" in meta["classes"]


@pytest.mark.slow
def test_regressor_output_is_predict(exporters, tmp_path):
    config = tiny_config(
        dataset={"name": "diabetes"},
        estimator={"class": "MLPRegressor", "params": {"random_state": 0}},
    )
    config["search"].update(space={"hidden_layer_sizes": [[6]]}, scoring="r2")
    path = write_config(tmp_path / "r.yaml", config)
    result = run(path, out=tmp_path / "run", progress=False, plots=False)
    exported = export_onnx(result.folder, tmp_path / "m.onnx", dtype="float64")
    session = _session(exported.path)
    assert [o.name for o in session.get_outputs()] == ["prediction"]
    X = result.dataset.X
    (out,) = session.run(None, {"X": X})
    expected = load_model(result.folder).predict(X)
    assert_allclose(out, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
def test_command_line_and_existing_file(exporters, tmp_path, capsys):
    result = _run(tmp_path)
    target = tmp_path / "model.onnx"
    assert main(["export", str(result.folder), "--onnx", str(target)]) == 0
    assert "raw feature columns (standardization folded" in capsys.readouterr().out
    assert main(["export", str(result.folder), "--onnx", str(target)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    with pytest.raises(ExportError):
        export_onnx(result.folder, target)


def test_missing_exporter_is_named(tmp_path, monkeypatch):
    result = _run(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import fails
    with pytest.raises(ExportError, match=r"needs the packages onnx and onnxscript"):
        export_onnx(result.folder, tmp_path / "m.onnx")


@pytest.mark.slow
def test_default_graph_is_the_training_dtype_in_one_file(exporters, tmp_path, capsys):
    result = _run(tmp_path)  # dtype's default: trained in float32
    folder = tmp_path / "onnx"
    exported = export_onnx(result.folder, folder / "m.onnx")
    assert sorted(p.name for p in folder.iterdir()) == ["m.onnx"]  # no m.onnx.data
    X = load_iris().data
    (out,) = _session(exported.path).run(None, {"X": X.astype(np.float32)})
    assert out.dtype == np.float32
    assert_allclose(out, load_model(result.folder).predict_proba(X), atol=1e-5)
    wide = tmp_path / "wide.onnx"
    assert (
        main(["export", str(result.folder), "--onnx", str(wide), "--dtype", "float64"])
        == 0
    )
    (out64,) = _session(wide).run(None, {"X": X})
    assert out64.dtype == np.float64
    with pytest.raises(ExportError, match="--dtype"):
        export_onnx(result.folder, tmp_path / "h.onnx", dtype="float16")
