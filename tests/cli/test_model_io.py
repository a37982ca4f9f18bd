"""The saved model format: tensors + JSON, loaded without pickle, same predictions."""

import json

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.datasets import load_iris
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from torchhpo import MLPClassifier, MLPRegressor
from torchhpo.cli import load_model, save_model
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
    tensors = torch.load(tmp_path / "model.pt", weights_only=True)
    assert sorted(tensors) == ["coefs.0", "coefs.1", "intercepts.0", "intercepts.1"]
    assert tensors["coefs.0"].dtype == torch.float64  # the estimator's own dtype
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["estimator"] == "MLPClassifier"
    assert meta["params"]["hidden_layer_sizes"] == [5]
    assert meta["fitted"]["n_layers_"] == 3
    assert meta["classes"]["values"] == [0, 1, 2]


def test_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(ModelFormatError, match=r"model\.json is missing"):
        load_model(tmp_path)
    (tmp_path / "model.json").write_text('{"format": "other"}')
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(ModelFormatError, match=r"is not a torchhpo-model/1 file"):
        load_model(tmp_path)
