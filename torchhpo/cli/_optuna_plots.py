"""The plots of an Optuna run's folder (matplotlib, the optional ``plots`` extra).

* ``optimization_history.png``: each completed trial's value and the best so far;
  pruned trials at the last value they reported.
* ``intermediate_values.png``: each trial's mean test-fold score per epoch, pruned
  trials marked where they stopped.
* ``param_importances.png`` and ``slice.png``: Optuna's own plots
  (``optuna.visualization.matplotlib``), when Optuna can draw them.

The study names its parameters as the config does; a study continued from an
earlier torchhpo names them as the Pipeline does (``mlp__alpha``), and the labels
of Optuna's plots are then shown in the config's names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._build import plain_name
from ._plots import _DPI, _figure

#: The plots drawn here for every Optuna run.
PLOT_FILES = ("optimization_history.png", "intermediate_values.png")


def write_plots(folder: Path, results) -> list[Path]:
    """Write the optimization history and the intermediate values; return paths."""
    folder.mkdir(parents=True, exist_ok=True)
    trials = results.trials
    paths = [folder / name for name in PLOT_FILES]

    figure = _figure(7.0, 4.2)
    ax = figure.add_subplot()
    done = [(t.number, t.value) for t in trials if t.state.name == "COMPLETE"]
    pruned = [
        (t.number, t.value)
        for t in trials
        if t.state.name == "PRUNED" and t.value is not None
    ]
    if done:
        x, y = zip(*done, strict=True)
        ax.plot(x, y, "o", color="tab:blue", label="completed trial")
        best = np.maximum.accumulate(np.asarray(y, dtype=float))
        ax.step(x, best, where="post", color="tab:red", label="best so far")
    if pruned:
        x, y = zip(*pruned, strict=True)
        ax.plot(x, y, "x", color="tab:gray", label="pruned (last reported)")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective (mean CV test score)")
    ax.set_title("Optimization history")
    integer_trial_axis(ax)
    if done or pruned:
        figure.legend(loc="outside lower center", ncols=3, frameon=False)
    figure.savefig(paths[0])

    figure = _figure(7.0, 4.2)
    ax = figure.add_subplot()
    for t in trials:
        steps = sorted(t.intermediate_values)
        if not steps:
            continue
        epochs = [s + 1 for s in steps]
        values = [t.intermediate_values[s] for s in steps]
        if t.state.name == "PRUNED":
            ax.plot(epochs, values, color="tab:gray", alpha=0.5, linewidth=1)
            ax.plot(epochs[-1], values[-1], "x", color="tab:red")
        else:
            ax.plot(epochs, values, color="tab:blue", alpha=0.7, linewidth=1)
    n_pruned = sum(t.state.name == "PRUNED" for t in trials)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean test-fold score")
    ax.set_title(
        f"Intermediate values: {n_pruned} of {len(trials)} trials pruned "
        "(x: the epoch a trial was pruned at)"
        if any(t.intermediate_values for t in trials)
        else "No intermediate values (pruning off)"
    )
    figure.savefig(paths[1])
    return paths + optuna_study_plots(folder, results.search.study_)


#: Optuna's own plots written for an Optuna run (when Optuna can draw them).
OPTUNA_STUDY_FILES = ("param_importances.png", "slice.png")


def integer_trial_axis(ax) -> None:
    """Trial numbers as integer ticks."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def optuna_study_plots(folder: Path, study) -> list[Path]:
    """Write Optuna's parameter-importance and slice plots of ``study``.

    ``optuna.visualization.matplotlib`` draws through pyplot; each figure is
    closed once written. Importances need two completed trials and a parameter
    that varies: without them that plot is skipped (the others are still
    written).

    Returns
    -------
    list of Path
        The files written.
    """
    import warnings

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    written = []
    draws = {
        OPTUNA_STUDY_FILES[0]: optuna_plots.plot_param_importances,
        OPTUNA_STUDY_FILES[1]: optuna_plots.plot_slice,
    }
    for name, draw in draws.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning
            try:
                drawn = draw(study)
            except (ValueError, RuntimeError, ZeroDivisionError):
                plt.close("all")
                continue
        axes = np.atleast_1d(drawn).ravel()
        for ax in axes:
            _plain_labels(ax)
        figure = axes[0].figure
        figure.set_dpi(_DPI)
        figure.savefig(folder / name, bbox_inches="tight")
        plt.close(figure)
        written.append(folder / name)
    return written


def _plain_labels(ax) -> None:
    """Config names (``alpha``) where Optuna's plots show the study's
    (``mlp__alpha``)."""
    ax.set_xlabel(plain_name(ax.get_xlabel()))
    labels = [plain_name(t.get_text()) for t in ax.get_yticklabels()]
    if any(labels):
        ax.set_yticks(ax.get_yticks(), labels)
