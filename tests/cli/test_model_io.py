"""The saved model format: tensors + JSON, loaded without pickle, same predictions."""

import json
import shutil

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from safetensors.numpy import load_file, save_file
from sklearn.datasets import load_iris
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from torchhpo import MLPClassifier, MLPRegressor
from torchhpo.cli import load_model, main, save_model
from torchhpo.cli._model_io import ModelFormatError

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X, y


def _round_trip(estimator, folder):
    save_model(estimator, folder, extra={"target": "t"})
    return load_model(folder)


def test_binary_string_labels_round_trip(iris, tmp_path):
    X, y = iris
    labels = np.where(y == 0, "setosa", "other")
    model = MLPClassifier((5,), max_iter=30, random_state=0).fit(X, labels)
    loaded = _round_trip(model, tmp_path)
    assert type(loaded) is MLPClassifier
    assert loaded.get_params() == model.get_params()
    assert_array_equal(loaded.classes_, model.classes_)
    assert_array_equal(loaded.predict(X), model.predict(X))
    assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.loss_curve_ == model.loss_curve_
    assert loaded.n_iter_ == model.n_iter_


def test_pipeline_with_scaler_round_trip(iris, tmp_path):
    X, y = iris
    model = Pipeline(
        [
            ("standardize", StandardScaler()),
            ("mlp", MLPClassifier((6, 3), activation="tanh", max_iter=30)),
        ]
    ).fit(X, y)
    loaded = _round_trip(model, tmp_path)
    assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert_array_equal(loaded[0].scale_, model[0].scale_)


def test_two_output_regressor_round_trip(iris, tmp_path):
    X, _ = iris
    Y = X[:, :2] * 2.0
    model = MLPRegressor(hidden_layer_sizes=(4,), max_iter=20, dtype="float64").fit(
        X[:, 2:], Y
    )
    loaded = _round_trip(model, tmp_path)
    assert loaded.n_outputs_ == 2
    assert loaded.get_params() == model.get_params()
    assert_array_equal(loaded.predict(X[:, 2:]), model.predict(X[:, 2:]))


def test_files_are_plain_tensors_and_json(iris, tmp_path):
    X, y = iris
    model = MLPClassifier((5,), max_iter=10).fit(X, y)
    save_model(model, tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    assert sorted(tensors) == ["coefs.0", "coefs.1", "intercepts.0", "intercepts.1"]
    assert tensors["coefs.0"].dtype == np.float64  # the estimator's own dtype
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["estimator"] == "MLPClassifier"
    assert meta["params"]["hidden_layer_sizes"] == [5]
    assert meta["fitted"]["n_layers_"] == 3
    assert meta["classes"]["values"] == [0, 1, 2]


def test_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(ModelFormatError, match=r"model\.json is missing"):
        load_model(tmp_path)
    (tmp_path / "model.json").write_text('{"format": "other"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelFormatError, match=r"is not a torchhpo-model/2 file"):
        load_model(tmp_path)


# -- what is read back is checked ------------------------------------------------


@pytest.fixture(scope="module")
def saved(iris, tmp_path_factory):
    """A saved 3-class model with its scaler: (folder, X)."""
    X, y = iris
    model = Pipeline(
        [("standardize", StandardScaler()), ("mlp", MLPClassifier((5,), max_iter=30))]
    ).fit(X, y)
    folder = tmp_path_factory.mktemp("model")
    names = [f"x{j}" for j in range(X.shape[1])]
    save_model(model, folder, extra={"feature_names": names, "target": None})
    return folder


def _tensors(change):
    def apply(folder):
        tensors = load_file(folder / "model.safetensors")
        change(tensors)
        save_file(tensors, folder / "model.safetensors")

    return apply


def _meta(change):
    def apply(folder):
        meta = json.loads((folder / "model.json").read_text())
        change(meta)
        (folder / "model.json").write_text(json.dumps(meta))

    return apply


def _nan(tensors):
    tensors["coefs.0"][0, 0] = np.nan


def _truncate(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-20])


def _old_format(folder):
    (folder / "model.safetensors").rename(folder / "model.pt")


CORRUPTIONS = {
    "nan weights": (_tensors(_nan), r"model\.safetensors: coefs\.0 holds NaN"),
    "inf scaler": (
        _tensors(lambda t: t["standardize.scale"].__setitem__(0, np.inf)),
        r"standardize\.scale holds NaN or infinite",
    ),
    "5 classes on 3 outputs": (
        _meta(lambda m: m["classes"].__setitem__("values", [0, 1, 2, 3, 4])),
        r"5 classes need 5 outputs, the tensors have 3",
    ),
    "1 class": (
        _meta(lambda m: m["classes"].__setitem__("values", [0])),
        r"classes is \[0\], expected 2 or more labels",
    ),
    "coef shape": (
        _tensors(lambda t: t.__setitem__("coefs.1", np.zeros((4, 3)))),
        r"coefs\.1 has shape \(4, 3\), expected \(5, \*\)",
    ),
    "intercept shape": (
        _tensors(lambda t: t.__setitem__("intercepts.0", np.zeros(7))),
        r"intercepts\.0 has shape \(7,\), expected \(5,\)",
    ),
    "mixed dtypes": (
        _tensors(lambda t: t.__setitem__("coefs.1", t["coefs.1"].astype(np.float32))),
        r"the layers mix dtypes",
    ),
    "integer weights": (
        _tensors(lambda t: t.__setitem__("coefs.1", t["coefs.1"].astype(np.int64))),
        r"coefs\.1 is int64, expected float32 or float64",
    ),
    "missing tensor": (
        _tensors(lambda t: t.pop("intercepts.1")),
        r"the tensor 'intercepts\.1' is missing",
    ),
    "hidden sizes": (
        _meta(lambda m: m["params"].__setitem__("hidden_layer_sizes", [6])),
        r"hidden_layer_sizes is \[6\] but the tensors' hidden widths are \[5\]",
    ),
    "scaler width": (
        _meta(lambda m: m["preprocessing"].__setitem__("n_features_in_", 3)),
        r"the scaler takes 3 features, the network 4",
    ),
    "bad activation": (
        _meta(lambda m: m["params"].__setitem__("activation", "bogus")),
        r"model\.json: cannot rebuild the model \(InvalidParameterError",
    ),
    "unknown attribute": (
        _meta(lambda m: m["fitted"].__setitem__("predict", 1)),
        r"cannot rebuild the model \(ValueError: unknown fitted attribute 'predict'",
    ),
    "n_coefs": (
        _meta(lambda m: m.__setitem__("n_coefs", "2")),
        r"n_coefs is '2', expected a positive integer",
    ),
    "not json": (
        lambda f: (f / "model.json").write_text("{"),
        r"model\.json: not readable JSON",
    ),
    "truncated tensors": (_truncate, r"model\.safetensors: not a readable tensors"),
    "old format": (_old_format, r"model\.pt: a model saved by an older torchhpo"),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupted_model_folder_is_one_line_naming_file_and_problem(
    saved, tmp_path, corruption
):
    damage, expected = CORRUPTIONS[corruption]
    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    load_model(folder)  # whole before the damage
    damage(folder)
    with pytest.raises(ModelFormatError, match=expected) as caught:
        load_model(folder)
    message = str(caught.value)
    assert "\n" not in message and str(folder) in message


@pytest.mark.parametrize("command", ["predict", "export"])
def test_predict_and_export_refuse_nan_weights_with_exit_2(
    saved, iris, tmp_path, capsys, command
):
    folder = tmp_path / "model"
    shutil.copytree(saved, folder)
    _tensors(_nan)(folder)
    data = tmp_path / "X.npy"
    np.save(data, iris[0])
    argv = {
        "predict": ["predict", str(folder), str(data)],
        "export": ["export", str(folder), "--onnx", str(tmp_path / "m.onnx")],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "coefs.0 holds NaN" in err
    assert not (tmp_path / "X.predictions.csv").exists()
