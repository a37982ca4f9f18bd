"""Datasets from files and generators, and ``predict`` on files."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import load_wine, make_regression

from torchhpo import MLPRegressor
from torchhpo.cli import ConfigError, load_config, load_model, predict, run
from torchhpo.cli._datasets import load_dataset
from torchhpo.cli._runner import CommandError

from .conftest import tiny_config, write_config

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

LABELS = np.array(["barolo", "grignolino", "barbera"])


def _wine_csv(path, rows=slice(None), order=None):
    """Write wine (string labels, the target column in the middle) as CSV."""
    wine = load_wine()
    names = list(wine.feature_names)
    header = [*names[:5], "cultivar", *names[5:]]
    lines = []
    for values, label in zip(wine.data[rows], LABELS[wine.target[rows]], strict=True):
        cells = [repr(float(v)) for v in values]
        lines.append([*cells[:5], str(label), *cells[5:]])
    if order is not None:
        header = [header[j] for j in order]
        lines = [[line[j] for j in order] for line in lines]
    text = "\n".join(",".join(line) for line in [header, *lines]) + "\n"
    path.write_text(text)
    return wine.data[rows], LABELS[wine.target[rows]]


def test_csv_dataset_with_string_labels_runs_and_predicts(tmp_path):
    X, y = _wine_csv(tmp_path / "wine.csv", rows=slice(None, None, 2))
    config = tiny_config(dataset={"file": "wine.csv", "target": "cultivar"})
    config["search"]["space"] = {"hidden_layer_sizes": [[6]], "alpha": [1e-4, 1e-2]}
    path = write_config(tmp_path / "wine.yaml", config)
    result = run(path, out=tmp_path / "run", progress=False, plots=False)
    assert result.dataset.feature_names == list(load_wine().feature_names)
    assert_array_equal(result.dataset.X, X)
    assert_array_equal(result.dataset.y, y)
    model = load_model(result.folder)
    assert_array_equal(model[-1].classes_, np.sort(LABELS))
    assert_array_equal(model.predict(X), result.search.best_estimator_.predict(X))

    # New data: columns in another order, the target column present: by name.
    order = list(range(14))[::-1]
    X_new, _ = _wine_csv(tmp_path / "new.csv", rows=slice(1, None, 2), order=order)
    written = predict(result.folder, tmp_path / "new.csv", out=tmp_path / "p.csv")
    lines = written.read_text().splitlines()
    assert lines[0].split(",") == ["prediction"] + [
        f"proba_{c}" for c in np.sort(LABELS)
    ]
    predicted = [line.split(",")[0] for line in lines[1:]]
    assert predicted == list(model.predict(X_new))


def test_npy_regression_without_preprocessing(tmp_path):
    X, y = make_regression(n_samples=80, n_features=5, noise=0.1, random_state=0)
    np.save(tmp_path / "train.npy", np.column_stack([y / 100, X]))
    config = tiny_config(
        dataset={"file": "train.npy", "target": 0},
        preprocessing="none",
        estimator={"class": "MLPRegressor", "params": {"max_iter": 50}},
    )
    config["search"] = {
        "kind": "random",
        "space": {"alpha": {"loguniform": [1e-5, 1e-1]}, "hidden_layer_sizes": [[4]]},
        "n_iter": 2,
        "cv": 2,
        "random_state": 0,
    }
    path = write_config(tmp_path / "reg.yaml", config)
    result = run(path, out=tmp_path / "run", progress=False, plots=False)
    assert_array_equal(result.dataset.y, y / 100)
    model = load_model(result.folder)
    assert type(model) is MLPRegressor
    np.save(tmp_path / "new.npy", X[:10])
    written = predict(result.folder, tmp_path / "new.npy")
    assert written == tmp_path / "new.predictions.csv"
    values = [float(v) for v in written.read_text().splitlines()[1:]]
    assert values == list(result.search.best_estimator_.predict(X[:10]))


def test_synthetic_dataset_uses_the_generator_options(tmp_path):
    config = tiny_config(
        dataset={
            "synthetic": "make_classification",
            "options": {"n_samples": 60, "n_features": 7, "n_classes": 3,
                        "n_informative": 4},
        }
    )  # fmt: skip
    spec = load_config(write_config(tmp_path / "s.yaml", config)).dataset
    assert spec.options["random_state"] == 0  # filled in, so reruns agree
    data = load_dataset(spec, classification=True)
    assert data.X.shape == (60, 7)
    assert set(np.unique(data.y)) == {0, 1, 2}


def test_csv_errors_name_the_column(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,label\n1,2,x\n3,oops,y\n")
    config = tiny_config(dataset={"file": "d.csv", "target": "label"})
    path = write_config(tmp_path / "c.yaml", config)
    with pytest.raises(ConfigError, match=r"line 3, column 'b': 'oops' is not a num"):
        run(path, out=tmp_path / "run", progress=False)
    config = tiny_config(dataset={"file": "d.csv", "target": "class"})
    path = write_config(tmp_path / "c.yaml", config)
    with pytest.raises(
        ConfigError, match=r"dataset.target: no column 'class' in d.csv; its col"
    ):
        run(path, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_classifier_on_a_continuous_target_is_refused_before_training(tmp_path):
    config = tiny_config(dataset={"name": "diabetes"})
    path = write_config(tmp_path / "c.yaml", config)
    with pytest.raises(
        ConfigError, match=r"estimator\.class: MLPClassifier needs class"
    ):
        run(path, out=tmp_path / "run", progress=False)


@pytest.mark.slow
def test_predict_refuses_data_without_the_model_features(iris_run, tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CommandError, match="lacks the model's columns"):
        predict(iris_run.folder, tmp_path / "d.csv")
