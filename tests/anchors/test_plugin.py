"""The anchor plugin binds torchhpo's classes only while an anchor module imports."""

import sklearn.model_selection
import sklearn.neural_network
from sklearn.experimental import enable_halving_search_cv  # noqa: F401

import torchhpo

from . import plugin
from .expected_failures import EXPECTED_FAILURES


def test_names_are_torchhpos_inside_and_scikit_learns_after():
    bindings = plugin.ANCHORS["test_search.py"] | plugin.ANCHORS["test_mlp.py"]
    before = {
        n: getattr(sklearn.model_selection, n)
        for n in bindings["sklearn.model_selection"]
    }
    with plugin._torchhpo_names(bindings):
        from sklearn.model_selection import GridSearchCV, HalvingRandomSearchCV
        from sklearn.neural_network import MLPRegressor

        assert GridSearchCV is torchhpo.GridSearchCV
        assert HalvingRandomSearchCV is torchhpo.HalvingRandomSearchCV
        assert MLPRegressor is torchhpo.MLPRegressor
    for name, value in before.items():
        assert getattr(sklearn.model_selection, name) is value
    assert sklearn.neural_network.MLPRegressor is not torchhpo.MLPRegressor


def test_only_the_anchor_files_are_rebound(tmp_path):
    sk_tests = tmp_path / "sklearn" / "model_selection" / "tests"
    assert plugin._anchor_of(sk_tests / "test_search.py") == "test_search.py"
    assert plugin._anchor_of(sk_tests / "test_split.py") is None
    assert plugin._anchor_of(tmp_path / "tests" / "test_search.py") is None


def test_expected_failures_name_anchor_files_with_a_reason():
    for key, reason in EXPECTED_FAILURES.items():
        anchor, sep, name = key.partition("::")
        assert anchor in plugin.ANCHORS and sep and name, key
        assert reason.strip(), key
