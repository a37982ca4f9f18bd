"""Config keys of issue 16, point 4: ``search.cv`` as a named scikit-learn splitter
with options, and ``dataset.drop`` / ``columns`` / ``groups``."""

import warnings

import pandas as pd
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import make_regression
from sklearn.model_selection import GroupKFold, KFold, ShuffleSplit, StratifiedKFold

from torchhpo.cli import ConfigError, load_config, predict, run
from torchhpo.cli._schema import CVSpec

from .conftest import tiny_config, write_config

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _splits(result):
    return [(list(train), list(test)) for train, test in result.search.cv]


def _expected(splitter, X, y, groups=None):
    return [(list(train), list(test)) for train, test in splitter.split(X, y, groups)]


def _small(**sections):
    config = tiny_config(**sections)
    config["search"]["space"] = {"hidden_layer_sizes": [[4]]}
    config["estimator"]["params"]["max_iter"] = 20
    return config


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cv", "splitter"),
    [
        (
            {"kind": "kfold", "n_splits": 3, "shuffle": True, "random_state": 0},
            KFold(3, shuffle=True, random_state=0),
        ),
        (
            dict(kind="stratified_kfold", n_splits=4, shuffle=True, random_state=1),
            StratifiedKFold(4, shuffle=True, random_state=1),
        ),
        (
            dict(kind="shuffle_split", n_splits=3, test_size=0.25, random_state=0),
            ShuffleSplit(3, test_size=0.25, random_state=0),
        ),
    ],
    ids=["kfold", "stratified_kfold", "shuffle_split"],
)  # fmt: skip
def test_named_splitter_makes_scikit_learns_folds(tmp_path, cv, splitter):
    config = _small()
    config["search"]["cv"] = cv
    path = write_config(tmp_path / "c.yaml", config)
    options = {k: v for k, v in cv.items() if k != "kind"}
    assert load_config(path).cv == CVSpec(cv["kind"], options)
    result = run(path, out=tmp_path / "run", progress=False, plots=False)
    assert isinstance(result.config.cv, CVSpec)
    assert result.config.n_splits == splitter.get_n_splits()
    data = result.dataset
    assert _splits(result) == _expected(splitter, data.X, data.y)
    assert result.search.n_splits_ == splitter.get_n_splits()
    # The config as run writes the splitter back in the config's form.
    assert result.config.to_config()["search"]["cv"] == cv


def test_splitter_from_the_command_line(tmp_path):
    path = write_config(tmp_path / "c.yaml", _small())
    config = load_config(path, ["search.cv={kind: kfold, n_splits: 3, shuffle: true}"])
    assert config.cv == CVSpec("kfold", {"n_splits": 3, "shuffle": True})


def _group_table(n_rows=60) -> pd.DataFrame:
    X, y = make_regression(n_samples=n_rows, n_features=3, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["site"] = [f"s{i % 6}" for i in range(n_rows)]
    frame["id"] = [f"row-{i:04d}" for i in range(n_rows)]
    frame["y"] = y / 100
    return frame


def _regression(file, **dataset):
    config = _small(
        dataset={"file": file, "target": "y", **dataset},
        estimator={"class": "MLPRegressor", "params": {"random_state": 0}},
    )
    config["search"]["scoring"] = None
    del config["preprocessing"]  # the default for files: auto
    return config


def test_group_kfold_keeps_each_group_on_one_side(tmp_path):
    frame = _group_table()
    frame.to_csv(tmp_path / "d.csv", index=False)
    config = _regression("d.csv", groups="site", drop=["id"])
    config["preprocessing"] = "standardize"
    config["search"]["cv"] = {"kind": "group_kfold", "n_splits": 3}
    path = write_config(tmp_path / "c.yaml", config)
    result = run(path, out=tmp_path / "run", progress=False, plots=False)
    assert result.dataset.feature_names == ["a", "b", "c"]  # site, id: not features
    assert_array_equal(result.dataset.groups, frame["site"].to_numpy())
    sites = frame["site"].to_numpy()
    for train, test in result.search.cv:
        assert not set(sites[train]) & set(sites[test])
    expected = _expected(GroupKFold(3), result.dataset.X, result.dataset.y, sites)
    assert _splits(result) == expected
    # The prediction file may hold the columns left out of the features.
    frame.head(5).to_csv(tmp_path / "new.csv", index=False)
    predicted = pd.read_csv(predict(result.folder, tmp_path / "new.csv"))
    best = result.search.best_estimator_
    X_new = frame.head(5)[["a", "b", "c"]].to_numpy()
    assert_array_equal(predicted["prediction"].to_numpy(), best.predict(X_new))


def test_drop_lets_an_identifier_column_out(tmp_path):
    _group_table().drop(columns=["site"]).to_csv(tmp_path / "d.csv", index=False)
    config = _regression("d.csv")
    config["preprocessing"] = "standardize"
    path = write_config(tmp_path / "c.yaml", config)
    with pytest.raises(ConfigError, match=r"column 'id': 'row-0000' is not a number"):
        run(path, out=tmp_path / "run", progress=False, plots=False)
    config["dataset"]["drop"] = ["id"]
    path = write_config(tmp_path / "c.yaml", config)
    result = run(path, out=tmp_path / "run", progress=False, plots=False)
    assert result.dataset.feature_names == ["a", "b", "c"]


def test_columns_keeps_a_subset(tmp_path):
    config = _small(dataset={"name": "iris", "columns": ["petal length (cm)"]})
    path = write_config(tmp_path / "c.yaml", config)
    result = run(path, out=tmp_path / "run", progress=False, plots=False)
    assert result.dataset.feature_names == ["petal length (cm)"]
    assert result.dataset.X.shape == (150, 1)


@pytest.mark.slow
def test_auto_warns_about_a_nearly_unique_string_column(tmp_path):
    _group_table().to_csv(tmp_path / "d.csv", index=False)
    path = write_config(tmp_path / "c.yaml", _regression("d.csv"))
    with pytest.warns(UserWarning, match=r"column 'id' of d.csv is text whose values"):
        run(path, out=tmp_path / "run", progress=False, plots=False)
    path = write_config(tmp_path / "c.yaml", _regression("d.csv", drop=["id"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(path, out=tmp_path / "run2", progress=False, plots=False)
    assert not [w for w in caught if "nearly all distinct" in str(w.message)]


CV_ERRORS = {
    "unknown splitter": (
        {"kind": "kfodl"},
        "search.cv.kind",
        "unknown value 'kfodl' (did you mean 'kfold'?)",
    ),
    "no kind": ({"n_splits": 3}, "search.cv.kind", "missing; name a splitter"),
    "unknown option": (
        {"kind": "kfold", "n_split": 3},
        "search.cv.n_split",
        "unknown key (did you mean 'n_splits'?)",
    ),
    "option refused by scikit-learn": (
        {"kind": "kfold", "n_splits": 3, "shuffle": "yes"},
        "search.cv",
        "shuffle must be True or False",
    ),
    "too few splits": (
        {"kind": "kfold", "n_splits": 1},
        "search.cv",
        "n_splits",
    ),
    "group splitter without groups": (
        {"kind": "group_kfold"},
        "search.cv.kind",
        "name their column in dataset.groups",
    ),
    "not a number nor a splitter": (
        "five",
        "search.cv",
        "or a splitter such as {kind: kfold",
    ),
}


@pytest.mark.parametrize("case", list(CV_ERRORS), ids=list(CV_ERRORS))
def test_cv_errors_name_the_key(tmp_path, case):
    cv, key, words = CV_ERRORS[case]
    config = _small()
    config["search"]["cv"] = cv
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path / "c.yaml", config))
    assert caught.value.key == key
    assert words in str(caught.value)


def test_dataset_column_errors_name_the_key(tmp_path):
    _group_table().to_csv(tmp_path / "d.csv", index=False)
    cases = [
        (_regression("d.csv", groups="site"), "dataset.groups", "group splitter"),
        (
            _regression("d.csv", drop=["id"], columns=["a"]),
            "dataset.columns",
            "not both",
        ),
        (_regression("d.csv", drop="id "), "dataset.drop", None),
        (_regression("d.csv", drop=[3]), "dataset.drop", "list of column names"),
        (
            _small(dataset={"name": "iris", "groups": "x"}),
            "dataset.groups",
            "needs dataset.file",
        ),
    ]
    stratified = _regression("d.csv")
    stratified["search"]["cv"] = {"kind": "stratified_kfold"}
    cases.append((stratified, "search.cv.kind", "use kfold or shuffle_split"))
    for config, key, words in cases:
        path = write_config(tmp_path / "c.yaml", config)
        try:
            load_config(path)
        except ConfigError as error:
            assert error.key == key, error
            assert words is None or words in str(error)
        else:
            # Names are checked against the file when it is read, before training.
            with pytest.raises(ConfigError) as caught:
                run(path, out=tmp_path / "run", progress=False, plots=False)
            assert caught.value.key == key
            assert "no column 'id ' in d.csv (did you mean 'id'?)" in str(caught.value)
