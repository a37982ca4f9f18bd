"""``preprocessing: auto``: a mixed-type CSV with missing cells through ``run`` and
``predict``, Parquet files, and the errors for columns that do not match."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.compose import ColumnTransformer

from torchhpo.cli import load_config, load_model, main, predict, run
from torchhpo.cli._runner import CommandError
from torchhpo.configs import FOLDER

from .conftest import tiny_config, write_config

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

DATA = Path(__file__).resolve().parents[1] / "data" / "penguins_like.csv"
CONFIGS = FOLDER  # the configs shipped in the package


def _penguins_config(**dataset) -> dict:
    config = tiny_config(
        dataset={"file": str(DATA), "target": "species", **dataset},
        estimator={
            "class": "MLPClassifier",
            "params": {"random_state": 0, "max_iter": 60, "learning_rate_init": 0.01},
        },
    )
    del config["preprocessing"]  # the default for files: auto
    config["search"]["space"] = {"hidden_layer_sizes": [[8], [6, 4]]}
    return config


@pytest.fixture(scope="module")
def penguins_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("penguins")
    path = write_config(folder / "penguins.yaml", _penguins_config())
    return run(path, out=folder / "run", progress=False, plots=False)


def test_the_shipped_file_is_mixed_and_has_holes():
    frame = pd.read_csv(DATA)
    assert len(frame) >= 200
    assert frame.isna().any().sum() >= 5
    assert not pd.api.types.is_numeric_dtype(frame["island"])
    assert not pd.api.types.is_numeric_dtype(frame["sex"])


def test_auto_is_the_default_for_files_and_runs_folded(penguins_run):
    config, dataset = penguins_run.config, penguins_run.dataset
    assert config.preprocessing == "auto"
    assert isinstance(dataset.X, pd.DataFrame)
    assert dataset.categorical == ["island", "sex"]
    assert dataset.numeric == [
        "bill_length_mm",
        "bill_depth_mm",
        "flipper_length_mm",
        "body_mass_g",
        "year",
    ]
    assert set(dataset.y) == {"Adelie", "Chinstrap", "Gentoo"}  # strings kept
    best = penguins_run.search.best_estimator_
    assert isinstance(best[0], ColumnTransformer)
    assert_array_equal(best[-1].classes_, ["Adelie", "Chinstrap", "Gentoo"])
    assert penguins_run.search.best_score_ > 0.8
    # Fold models' loss curves were recorded through the DataFrame folds.
    assert penguins_run.recorder.curves


def test_saved_model_predicts_as_the_best_estimator(penguins_run):
    model = load_model(penguins_run.folder)
    X = penguins_run.dataset.X
    best = penguins_run.search.best_estimator_
    assert_allclose(model.predict_proba(X), best.predict_proba(X), rtol=0, atol=1e-15)
    assert_array_equal(model.predict(X), best.predict(X))


def test_predict_takes_the_raw_csv(penguins_run, tmp_path):
    frame = pd.read_csv(DATA)
    new = frame.drop(columns=["species"]).iloc[::-1]
    new = new[list(new.columns)[::-1]]  # columns in another order
    new.loc[new.index[0], "island"] = "Atlantis"  # an unseen category: ignored
    new.to_csv(tmp_path / "new.csv", index=False)
    written = predict(penguins_run.folder, tmp_path / "new.csv")
    out = pd.read_csv(written)
    assert list(out.columns) == [
        "prediction",
        "proba_Adelie",
        "proba_Chinstrap",
        "proba_Gentoo",
    ]
    best = penguins_run.search.best_estimator_
    raw = new.copy()
    raw["island"] = raw["island"].astype(object)
    expected = best.predict(raw[penguins_run.dataset.feature_names])
    assert list(out["prediction"]) == list(expected)


def test_predict_names_missing_and_extra_columns(penguins_run, tmp_path):
    frame = pd.read_csv(DATA).drop(columns=["sex"])
    frame["colour"] = "blue"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(
        CommandError,
        match=r"bad.csv lacks the model's columns 'sex' and has columns the model "
        r"was not trained on 'colour'",
    ):
        predict(penguins_run.folder, tmp_path / "bad.csv")


def test_predict_refuses_text_in_a_numeric_column(penguins_run, tmp_path):
    frame = pd.read_csv(DATA)
    frame["body_mass_g"] = frame["body_mass_g"].astype(object)
    frame.loc[3, "body_mass_g"] = "heavy"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(CommandError, match=r"column 'body_mass_g': 'heavy' is not a"):
        predict(penguins_run.folder, tmp_path / "bad.csv")


def test_parquet_file(tmp_path):
    pytest.importorskip("pyarrow")
    pd.read_csv(DATA).to_parquet(tmp_path / "penguins.parquet")
    config = _penguins_config(file="penguins.parquet")
    config["search"]["space"] = {"hidden_layer_sizes": [[6]]}
    config["search"]["kind"] = "grid"
    path = write_config(tmp_path / "p.yaml", config)
    result = run(path, out=tmp_path / "run", progress=False, plots=False)
    assert result.dataset.categorical == ["island", "sex"]
    written = predict(result.folder, tmp_path / "penguins.parquet")
    assert len(pd.read_csv(written)) == 210


def test_missing_target_values_are_named(tmp_path):
    frame = pd.read_csv(DATA)
    frame.loc[[4, 9], "species"] = np.nan
    frame.to_csv(tmp_path / "holes.csv", index=False)
    config = _penguins_config(file="holes.csv")
    path = write_config(tmp_path / "h.yaml", config)
    with pytest.raises(
        ValueError, match=r"dataset.target: column 'species' of holes.csv has 2 miss"
    ):
        run(path, out=tmp_path / "run", progress=False)


def test_string_column_without_auto_is_refused(tmp_path):
    config = _penguins_config()
    config["preprocessing"] = "standardize"
    path = write_config(tmp_path / "s.yaml", config)
    with pytest.raises(ValueError, match=r"column 'island'.*is not a num"):
        run(path, out=tmp_path / "run", progress=False)


def test_shipped_config_checks():
    config = load_config(CONFIGS / "penguins_like.yaml")
    assert config.dataset.file == CONFIGS / "data" / "penguins_like.csv"
    assert config.dataset.file.read_bytes() == DATA.read_bytes()  # the same file
    assert config.preprocessing == "auto"


def test_command_line_run_predict(tmp_path, capsys):
    path = write_config(tmp_path / "penguins.yaml", _penguins_config())
    out = tmp_path / "run"
    args = ["run", str(path), "--out", str(out), "--no-progress", "--no-plots"]
    assert main(args) == 0
    args = ["predict", str(out), str(DATA), "--out", str(tmp_path / "p.csv")]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "imputed, standardized, one-hot encoded" in text
    assert "Predictions written to" in text
    assert len(pd.read_csv(tmp_path / "p.csv")) == 210


def test_numeric_auto_model_predicts_npy(tmp_path):
    X = pd.read_csv(DATA)[["bill_length_mm", "body_mass_g"]].to_numpy()
    y = (pd.read_csv(DATA)["species"] == "Gentoo").to_numpy(dtype=float)
    np.save(tmp_path / "d.npy", np.column_stack([X, y]))
    config = _penguins_config(file="d.npy", target=2)
    config["search"]["space"] = {"hidden_layer_sizes": [[4]]}
    path = write_config(tmp_path / "n.yaml", config)
    result = run(path, out=tmp_path / "run", progress=False, plots=False)
    assert result.config.preprocessing == "auto"
    np.save(tmp_path / "new.npy", X[:7])
    out = pd.read_csv(predict(result.folder, tmp_path / "new.npy"))
    frame = pd.DataFrame(X[:7], columns=result.dataset.feature_names)
    expected = result.search.best_estimator_.predict(frame)
    assert list(out["prediction"]) == list(expected)


def test_only_the_auto_column_transformer_is_saved(penguins_run, tmp_path):
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from torchhpo import MLPClassifier
    from torchhpo.cli import save_model

    X = pd.read_csv(DATA).dropna()
    y = X.pop("species")
    other = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["island"])),
        MLPClassifier(hidden_layer_sizes=(3,), max_iter=5),
    ).fit(X, y)
    with pytest.raises(
        TypeError, match="the preprocessing: auto ColumnTransformer and an MLP"
    ):
        save_model(other, tmp_path)
