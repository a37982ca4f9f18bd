"""What the run folder's plots say: legends for their colours, axis labels,
readable ticks, halving iterations apart, user wording, Optuna's own plots."""

import pytest

import torchhpo.cli._optuna_plots as optuna_plots
import torchhpo.cli._plots as plots
from torchhpo.cli import run

from .conftest import tiny_config, write_config

pytest.importorskip("matplotlib")
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def figures(monkeypatch):
    """The figures the plots draw, by the order they were made."""
    made = []
    original = plots._figure

    def recording(*args, **kwargs):
        figure = original(*args, **kwargs)
        made.append(figure)
        return figure

    # Every module that draws takes `_figure` by name at import: patch each.
    monkeypatch.setattr(plots, "_figure", recording)
    monkeypatch.setattr(optuna_plots, "_figure", recording)
    return made


def _run(tmp_path, search, **params):
    config = tiny_config()
    config["estimator"]["params"].update(max_iter=20, **params)
    config["search"] = {"cv": 2, "scoring": "accuracy", **search}
    path = write_config(tmp_path / "c.yaml", config)
    return run(path, out=tmp_path / "run", progress=False)


def _legend_texts(figure):
    return [t.get_text() for legend in figure.legends for t in legend.get_texts()]


@pytest.mark.slow
def test_scores_plot_labels_its_axes_colours_and_log_ticks(tmp_path, figures):
    _run(
        tmp_path,
        {
            "kind": "random",
            "space": {
                "alpha": {"loguniform": [1e-4, 5e-3]},  # under two decades
                "activation": ["relu", "tanh"],
            },
            "n_iter": 6,
            "random_state": 0,
        },
    )
    scores = figures[0]
    scores.canvas.draw()
    axes = [ax for ax in scores.axes if ax.get_visible()]
    assert sorted(ax.get_xlabel() for ax in axes) == ["activation", "alpha"]
    legend = _legend_texts(scores)
    assert "a candidate" in legend and "best candidate" in legend
    assert "best candidate with this value" in legend
    (alpha,) = [ax for ax in axes if ax.get_xlabel() == "alpha"]
    low, high = alpha.get_xlim()
    shown = [
        t.get_text()
        for t in alpha.get_xticklabels()
        if t.get_text() and low <= t.get_position()[0] <= high
    ]
    assert len(shown) >= 3  # 1-2-5 steps, not one label per decade
    assert all("times" not in s and "^" not in s for s in shown)  # plain numbers
    assert not [t.get_text() for t in alpha.get_xticklabels(minor=True) if t.get_text()]


@pytest.mark.slow
def test_halving_scores_are_coloured_by_iteration(tmp_path, figures):
    result = _run(
        tmp_path,
        {
            "kind": "halving_grid",
            "space": {"alpha": [1e-4, 1e-3, 1e-2, 1e-1]},
            "factor": 2,
            "resource": "max_iter",
            "min_resources": 5,
            "max_resources": 20,
        },
    )
    legend = _legend_texts(figures[0])
    resources = result.search.n_resources_
    for k, r in enumerate(resources):
        assert f"iteration {k} (max_iter {r})" in legend


@pytest.mark.slow
def test_time_plot_speaks_the_users_words(tmp_path, figures):
    result = _run(
        tmp_path,
        {"kind": "grid", "space": {"hidden_layer_sizes": [[4], [3, 3]]}},
    )
    path = plots.plot_time_per_pack(
        result.search.cv_results_,
        result.config,
        result.search.n_splits_,
        tmp_path / "t.png",
        search_seconds=1e-6,  # shorter than the bars
    )
    assert path.is_file()
    (ax,) = figures[-1].axes
    title = ax.get_title()
    assert "network shape" in title and "cv_results_" not in title
    assert "more than the wall time" in title
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "layers [4]",
        "layers [3, 3]",
    ]


@pytest.mark.slow
def test_optuna_run_writes_optunas_plots_with_integer_trials(tmp_path, figures):
    pytest.importorskip("optuna")
    result = _run(
        tmp_path,
        {
            "kind": "optuna",
            "space": {
                "alpha": {"loguniform": [1e-5, 1e-1]},
                "activation": ["relu", "tanh"],
            },
            "n_trials": 6,
            "pruner": "none",
            "random_state": 0,
        },
    )
    written = {p.name for p in (result.folder / "plots").iterdir()}
    assert {"param_importances.png", "slice.png"} <= written
    history = figures[0]
    history.canvas.draw()
    (ax,) = history.axes
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert all(float(t).is_integer() for t in ticks)
    assert ax.get_legend() is None and "completed trial" in _legend_texts(history)


@pytest.mark.slow
def test_continuous_only_scores_legend_names_only_what_is_drawn(tmp_path, figures):
    _run(
        tmp_path,
        {
            "kind": "random",
            "space": {"alpha": {"loguniform": [1e-5, 1e-1]}},
            "n_iter": 4,
            "random_state": 0,
        },
    )
    legend = _legend_texts(figures[0])
    assert "a candidate" in legend and "best candidate" in legend
    assert "best candidate with this value" not in legend
