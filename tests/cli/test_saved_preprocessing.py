"""A run folder's saved preprocessing is a scikit-learn transformer: the loaded
model's ``[:-1]`` transforms as the fitted pipeline's steps do and names its
output features as scikit-learn's fitted steps name theirs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone

from torchhpo.cli import load_model, run

from .conftest import tiny_config, write_config

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
DATA = Path(__file__).resolve().parents[1] / "data" / "penguins_like.csv"


def _run(tmp_path, **sections):
    config = tiny_config(**sections)
    config["search"]["space"] = {"hidden_layer_sizes": [[4]]}
    config["estimator"]["params"]["max_iter"] = 10
    path = write_config(tmp_path / "c.yaml", config)
    return run(path, out=tmp_path / "run", progress=False, plots=False)


def test_auto_preprocessing_transforms_and_names_like_the_fitted_step(tmp_path):
    result = _run(
        tmp_path,
        dataset={"file": str(DATA), "target": "species"},
        preprocessing="auto",
    )
    loaded = load_model(result.folder)[:-1]
    fitted = result.search.best_estimator_[:-1]
    raw = pd.DataFrame(result.dataset.X)
    assert_allclose(loaded.transform(raw), fitted.transform(raw), atol=1e-12)
    names = loaded.get_feature_names_out()
    theirs = [n.split("__", 1)[1] for n in fitted.get_feature_names_out()]
    assert list(names) == theirs
    assert len(names) == loaded.transform(raw).shape[1]
    clone(loaded)  # a scikit-learn estimator: clone, tags, fit_transform
    assert_allclose(loaded.fit_transform(raw), loaded.transform(raw))


def test_standardize_preprocessing_is_a_transformer(tmp_path):
    result = _run(tmp_path, preprocessing="standardize")
    loaded = load_model(result.folder)[:-1]
    X = np.asarray(result.dataset.X, dtype=float)
    assert_allclose(
        loaded.transform(X), result.search.best_estimator_[:-1].transform(X)
    )
    names = result.dataset.feature_names
    assert list(loaded.get_feature_names_out(names)) == list(names)
    assert list(loaded.get_feature_names_out())[:2] == ["x0", "x1"]
    with pytest.raises(ValueError, match="input_features"):
        loaded.get_feature_names_out(["a"])
