"""``torchhpo predict`` never answers from misplaced columns or drops a row.

Every run folder records its input columns (``columns.json``); a prediction file
is matched to them by name for every preprocessing mode, and a header-less CSV is
refused unless ``--no-header`` says so.
"""

import json

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import make_regression

from torchhpo.cli import main, predict, run
from torchhpo.cli._runner import CommandError

from .conftest import tiny_config, write_config

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

NAMES = ["rooms", "age", "distance"]


def _table(n_samples=60, seed=0) -> pd.DataFrame:
    X, y = make_regression(
        n_samples=n_samples, n_features=3, noise=0.1, random_state=seed
    )
    frame = pd.DataFrame(X * [1, 10, 100], columns=NAMES)  # unlike scales
    frame["price"] = y / 100
    return frame


@pytest.fixture(scope="module", params=["standardize", "none", "auto"])
def regression_run(request, tmp_path_factory):
    """A small regression run on a CSV, for each preprocessing mode."""
    folder = tmp_path_factory.mktemp(f"columns_{request.param}")
    _table().to_csv(folder / "train.csv", index=False)
    config = tiny_config(
        dataset={"file": "train.csv", "target": "price"},
        preprocessing=request.param,
        estimator={
            "class": "MLPRegressor",
            "params": {"random_state": 0, "max_iter": 30},
        },
    )
    config["search"] = {
        "kind": "grid",
        "space": {"hidden_layer_sizes": [[8]]},
        "cv": 2,
        "scoring": None,
    }
    path = write_config(folder / "reg.yaml", config)
    result = run(path, out=folder / "run", progress=False, plots=False)
    result.new = _table(n_samples=5, seed=1)
    result.expected = result.search.best_estimator_.predict(
        result.new[NAMES] if request.param == "auto" else result.new[NAMES].to_numpy()
    )
    return result


def _predicted(path):
    return pd.read_csv(path)["prediction"].to_numpy()


@pytest.mark.slow
def test_run_folder_records_the_input_columns(regression_run):
    record = json.loads((regression_run.folder / "columns.json").read_text())
    assert record["target"] == "price"
    assert [c["name"] for c in record["columns"]] == NAMES
    assert [c["kind"] for c in record["columns"]] == ["numeric"] * 3
    assert [c["dtype"] for c in record["columns"]] == ["float64"] * 3
    assert (
        "columns.json"
        in json.loads((regression_run.folder / "run.json").read_text())["files"]
    )


def test_reordered_columns_are_put_back_by_name(regression_run, tmp_path):
    regression_run.new[["distance", "price", "rooms", "age"]].to_csv(
        tmp_path / "new.csv", index=False
    )
    written = predict(regression_run.folder, tmp_path / "new.csv")
    assert_array_equal(_predicted(written), regression_run.expected)


def test_renamed_columns_are_refused_by_name(regression_run, tmp_path):
    renamed = regression_run.new[NAMES].set_axis(["a", "b", "c"], axis=1)
    renamed.to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(
        CommandError,
        match=r"new.csv lacks the model's columns 'rooms', 'age', 'distance' and has "
        r"columns the model was not trained on 'a', 'b', 'c'",
    ):
        predict(regression_run.folder, tmp_path / "new.csv")
    assert not (tmp_path / "new.predictions.csv").exists()


def test_an_extra_column_is_refused_even_with_all_names_present(
    regression_run, tmp_path
):
    frame = regression_run.new.assign(note=1.0)
    frame.to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(CommandError, match=r"not trained on 'note'"):
        predict(regression_run.folder, tmp_path / "new.csv")


def test_headerless_file_is_refused_unless_told(regression_run, tmp_path):
    data = tmp_path / "rows.csv"
    regression_run.new[NAMES].to_csv(data, index=False, header=False)
    with pytest.raises(CommandError, match=r"first row of rows.csv looks like data"):
        predict(regression_run.folder, data)
    written = predict(regression_run.folder, data, header=False)
    assert len(_predicted(written)) == 5  # no row lost to a header
    assert_array_equal(_predicted(written), regression_run.expected)


def test_headerless_file_needs_the_model_column_count(regression_run, tmp_path):
    data = tmp_path / "rows.csv"
    regression_run.new.to_csv(data, index=False, header=False)  # target included
    with pytest.raises(CommandError, match=r"has 4 columns; without a header row"):
        predict(regression_run.folder, data, header=False)


def test_command_line_no_header(regression_run, tmp_path, capsys):
    data = tmp_path / "rows.csv"
    regression_run.new[NAMES].to_csv(data, index=False, header=False)
    assert main(["predict", str(regression_run.folder), str(data)]) == 2
    assert "--no-header" in capsys.readouterr().err
    assert main(["predict", str(regression_run.folder), str(data), "--no-header"]) == 0
    assert_array_equal(
        _predicted(tmp_path / "rows.predictions.csv"), regression_run.expected
    )


def test_text_in_a_numeric_column_names_line_and_column(regression_run, tmp_path):
    frame = regression_run.new.astype({"age": object})
    frame.loc[2, "age"] = "old"
    frame.to_csv(tmp_path / "new.csv", index=False)
    with pytest.raises(CommandError, match=r"line 4, column 'age': 'old' is not a"):
        predict(regression_run.folder, tmp_path / "new.csv")


def test_npy_needs_the_model_column_count(regression_run, tmp_path):
    np.save(tmp_path / "new.npy", regression_run.new[NAMES[:2]].to_numpy())
    with pytest.raises(CommandError, match=r"has 2 columns; the model takes 3"):
        predict(regression_run.folder, tmp_path / "new.npy")
