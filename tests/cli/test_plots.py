"""The run folder's PNG plots: written, and with something drawn on them."""

import io

import numpy as np
import pytest

from torchhpo.cli import run
from torchhpo.cli._plots import PLOT_FILES, plot_loss_curves

from .conftest import tiny_config, write_config

image = pytest.importorskip("matplotlib.image")


def _check_png(path, min_width=400, min_height=300, coloured=True):
    """Open the PNG; check its size and that a fair part of it is drawn on."""
    pixels = image.imread(path)
    height, width = pixels.shape[:2]
    assert width >= min_width
    assert height >= min_height
    rgb = pixels[..., :3]
    drawn = np.any(rgb < 0.9, axis=-1)  # not white / near-white background
    assert drawn.mean() > 0.01
    colours = np.unique((rgb.reshape(-1, 3) * 255).astype(np.uint8), axis=0)
    assert len(colours) > 20  # lines, markers, text: not a blank or flat image
    if coloured:  # data drawn in colour (red / blue / green), not only grey text
        assert (np.ptp(rgb, axis=-1) > 0.2).sum() > 50
    return pixels


@pytest.mark.slow
@pytest.mark.parametrize("name", PLOT_FILES)
def test_plots_are_written_and_not_blank(iris_run, name):
    _check_png(iris_run.folder / "plots" / name)


def test_score_plot_has_a_panel_per_searched_parameter(iris_run):
    wide = image.imread(iris_run.folder / "plots" / "scores_by_param.png")
    # two searched parameters: two panels side by side, wider than tall
    assert wide.shape[1] > 1.5 * wide.shape[0]


@pytest.mark.slow
def test_loss_curve_plot_without_curves_says_why(tmp_path):
    path = plot_loss_curves([None, None], None, {"solver": "lbfgs"}, tmp_path / "l.png")
    _check_png(path, coloured=False)


@pytest.mark.slow
def test_random_search_plots_continuous_parameters(tmp_path):
    config = tiny_config()
    config["search"] = {
        "kind": "random",
        "space": {
            "alpha": {"loguniform": [1e-5, 1e-1]},
            "learning_rate_init": {"uniform": [0.001, 0.02]},
            "hidden_layer_sizes": [[4], [3, 3]],
        },
        "n_iter": 4,
        "cv": 2,
        "random_state": 0,
    }
    config["estimator"]["params"] = {"random_state": 0, "max_iter": 60}
    path = write_config(tmp_path / "r.yaml", config)
    with pytest.warns(Warning):  # 60 epochs: scikit-learn's ConvergenceWarning
        result = run(path, out=tmp_path / "run", progress=False, stdout=io.StringIO())
    for name in PLOT_FILES:
        _check_png(result.folder / "plots" / name)


@pytest.mark.slow
def test_without_matplotlib_the_run_skips_plots_with_a_note(tmp_path, monkeypatch):
    monkeypatch.setattr("torchhpo.cli._runner.plots_available", lambda: False)
    config = tiny_config()
    config["search"]["space"] = {"hidden_layer_sizes": [[4]]}
    path = write_config(tmp_path / "c.yaml", config)
    stdout = io.StringIO()
    result = run(path, out=tmp_path / "run", progress=False, stdout=stdout)
    assert "Plots skipped: matplotlib is not installed" in stdout.getvalue()
    assert not (result.folder / "plots").exists()
    assert (result.folder / "model.json").is_file()
