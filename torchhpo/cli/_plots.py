"""The run folder's PNG plots (matplotlib, the optional ``plots`` extra).

* ``scores_by_param.png``: for each searched parameter, the mean CV test score of
  every candidate against its value, with ± one standard deviation over folds as
  bars; the best candidate per value is drawn in colour, the overall best starred,
  and a legend names the colours. A halving search's rows are coloured by
  iteration, side by side per value (their scores used different resources).
* ``loss_curves.png``: the best candidate's training loss per epoch on each CV fold
  (the fold models the search scored, recorded as it scored them), and the refit on
  all the data.
* ``time_per_pack.png``: training time by network shape. Models of equal layer
  sizes train together (one pack or, past the engine's pack-size cap, a few); each
  bar sums their fit times (each model's share of its pack's time). Packs of
  different shapes may train at once, so the bars can add up to more than the
  search's wall time (the dashed line); the plot says so when they do.
* ``rungs.png`` (halving searches): each candidate's mean CV test score against the
  resource of every iteration it reached, on a log axis; the candidates of the last
  iteration drawn in colour, the best starred.

Figures are drawn with matplotlib's object API on the Agg canvas: no pyplot, no
display, nothing global changed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._build import plain_name
from ._recorder import FoldCurve
from ._schema import Distribution, RunConfig

PLOT_FILES = ("scores_by_param.png", "loss_curves.png", "time_per_pack.png")
_DPI = 110


def plots_available() -> bool:
    """Whether matplotlib (``pip install 'torchhpo[plots]'``) is installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _label(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, tuple | list):  # layer sizes, as the config writes them
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


#: Colours of the scores plot, named in its legend.
CANDIDATE, BEST_PER_VALUE, BEST = "0.55", "tab:blue", "tab:red"


def _log_ticks(ax, values: np.ndarray) -> None:
    """Readable ticks on a log x axis: 1-2-5 steps over less than two decades,
    plain numbers, no labelled minor ticks."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    finite = values[np.isfinite(values) & (values > 0)]
    if len(finite) and np.log10(finite.max() / finite.min()) < 2:
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _scores_legend(
    figure, halving_iterations: list[str] | None, per_value: bool
) -> None:
    """One legend for the figure's colours, below the panels (``per_value``: a
    panel of listed values highlights the best candidate per value)."""
    from matplotlib.lines import Line2D

    handles = []
    if halving_iterations is None:
        handles.append(
            Line2D(
                [], [], ls="", marker="o", ms=4, color=CANDIDATE, label="a candidate"
            )
        )
    if halving_iterations is None and per_value:
        handles.append(
            Line2D(
                [], [], ls="", marker="o", ms=7, color=BEST_PER_VALUE,
                label="best candidate with this value",
            )
        )  # fmt: skip
    if halving_iterations is not None:
        for colour, label in zip(_iteration_colours(len(halving_iterations)),
                                 halving_iterations, strict=True):  # fmt: skip
            handles.append(
                Line2D([], [], ls="", marker="o", ms=5, color=colour, label=label)
            )
    handles.append(
        Line2D([], [], ls="", marker="*", ms=12, color=BEST, label="best candidate")
    )
    handles.append(Line2D([], [], color="0.6", lw=1, label="± std over the CV folds"))
    figure.legend(
        handles=handles, loc="outside lower center", ncols=min(len(handles), 4),
        fontsize=8, frameon=False,
    )  # fmt: skip


def _iteration_colours(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.85 * i / max(n - 1, 1)) for i in range(n)]


def describe_params(params: dict) -> str:
    """Return ``alpha=0.001, solver=adam`` (config names)."""
    return ", ".join(f"{plain_name(k)}={_label(v)}" for k, v in params.items())


def plot_scores_by_param(
    cv_results: dict, config: RunConfig, names: Sequence[str], path: Path
) -> Path:
    """Plot mean test score (± std) against each searched parameter's values.

    Parameters
    ----------
    cv_results : dict
        The search's ``cv_results_``.
    config : RunConfig
        For the scorer name and which parameters are distributions.
    names : sequence of str
        Searched parameter names as in ``cv_results_`` (``mlp__alpha``).
    path : Path
        The PNG to write.
    """
    means = np.asarray(cv_results["mean_test_score"], dtype=float)
    stds = np.asarray(cv_results["std_test_score"], dtype=float)
    best = _best_index(cv_results, means)
    iterations = _iterations(cv_results)
    n_cols = min(3, len(names))
    n_rows = math.ceil(len(names) / n_cols)
    figure = _figure(4.4 * n_cols, 3.6 * n_rows + 1.0)
    axes = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        values = list(cv_results[f"param_{name}"])
        written = config.space[plain_name(name)]
        if isinstance(written, Distribution):
            x = np.asarray(values, dtype=float)
            colours = _point_colours(iterations, len(x))
            for colour in dict.fromkeys(colours):
                rows = [i for i, c in enumerate(colours) if c == colour]
                ax.errorbar(
                    x[rows], means[rows], yerr=stds[rows], fmt="o", ms=4,
                    color=colour, ecolor="0.6", elinewidth=1, capsize=2, alpha=0.85,
                )  # fmt: skip
            if written.kind == "loguniform":
                _log_ticks(ax, x)
            if best is not None:
                ax.plot(x[best], means[best], "*", ms=14, color=BEST, zorder=5)
        else:
            order = [_label(v) for v in written]
            _categorical(ax, values, order, means, stds, best, iterations)
        ax.set_xlabel(plain_name(name))
        ax.set_ylabel(f"mean CV test {config.scoring or 'score'}")
        ax.grid(True, axis="y", alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    n_splits = sum(key.startswith("split") for key in cv_results if "_test_" in key)
    title = (
        f"Mean CV test {config.scoring or 'score'} of each candidate ({n_splits} folds)"
    )
    labels = None
    if iterations is not None:
        resource = plain_name(config.halving.get("resource", "n_samples"))
        labels = [
            f"iteration {k} ({resource} {r})"
            for k, r in _iteration_resources(cv_results)
        ]
        title += ", by halving iteration (scores of different iterations used "
        title += "different resources)"
    figure.suptitle(title)
    listed = any(
        not isinstance(config.space[plain_name(n)], Distribution) for n in names
    )
    _scores_legend(figure, labels, listed)
    figure.savefig(path)
    return path


def _iterations(cv_results: dict) -> np.ndarray | None:
    """Each row's halving iteration, or None for other searches."""
    if "iter" not in cv_results:
        return None
    return np.asarray(cv_results["iter"], dtype=int)


def _iteration_resources(cv_results: dict) -> list[tuple[int, int]]:
    pairs = dict(zip(cv_results["iter"], cv_results["n_resources"], strict=True))
    return sorted((int(k), int(r)) for k, r in pairs.items())


def _point_colours(iterations: np.ndarray | None, n: int) -> list:
    if iterations is None:
        return [CANDIDATE] * n
    palette = _iteration_colours(int(iterations.max()) + 1)
    return [palette[k] for k in iterations]


def _best_index(cv_results: dict, means: np.ndarray) -> int | None:
    """The best candidate (halving: the best of the last iteration, as
    scikit-learn's ``best_index_``)."""
    finite = np.isfinite(means)
    iterations = _iterations(cv_results)
    if iterations is not None:
        finite &= iterations == iterations.max()
    if not finite.any():
        return None
    return int(np.flatnonzero(finite)[np.argmax(means[finite])])


def _categorical(
    ax, values: list, order: list[str], means, stds, best, iterations=None
) -> None:
    """Candidates at their value's position (jittered, values in the config's
    order); per value, the best in colour. Halving: one colour per iteration,
    each iteration's points side by side, in order."""
    present = {_label(v) for v in values}
    labels = [label for label in dict.fromkeys(order) if label in present]
    position = {label: i for i, label in enumerate(labels)}
    slots = np.array([position[_label(v)] for v in values], dtype=float)
    offsets = np.zeros(len(values))
    for i in range(len(labels)):
        members = np.flatnonzero(slots == i)
        if iterations is not None:
            members = members[np.argsort(iterations[members], kind="stable")]
        if len(members) > 1:
            offsets[members] = np.linspace(-0.3, 0.3, len(members))
    x = slots + offsets
    colours = _point_colours(iterations, len(values))
    for colour in dict.fromkeys(colours):
        rows = [i for i, c in enumerate(colours) if c == colour]
        ax.errorbar(
            x[rows], means[rows], yerr=stds[rows], fmt="o", ms=4, color=colour,
            ecolor="0.75", elinewidth=1, capsize=2,
        )  # fmt: skip
    if iterations is not None:
        if best is not None:
            ax.plot(x[best], means[best], "*", ms=14, color=BEST, zorder=5)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        return
    for i in range(len(labels)):
        members = np.flatnonzero(slots == i)
        finite = members[np.isfinite(means[members])]
        if len(finite) == 0:
            continue
        top = finite[np.argmax(means[finite])]
        ax.errorbar(
            x[top], means[top], yerr=stds[top], fmt="o", ms=7, color=BEST_PER_VALUE,
            ecolor=BEST_PER_VALUE, elinewidth=2, capsize=4, zorder=4,
        )  # fmt: skip
    if best is not None:
        ax.plot(x[best], means[best], "*", ms=14, color=BEST, zorder=5)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlim(-0.6, len(labels) - 0.4)


def plot_loss_curves(
    fold_curves: Sequence[FoldCurve | None],
    refit_curve: Sequence[float] | None,
    best_params: dict,
    path: Path,
) -> Path:
    """Plot the best candidate's loss per epoch on each fold, and its refit.

    Parameters
    ----------
    fold_curves : sequence of FoldCurve or None
        One per fold (None for a fold whose fit failed).
    refit_curve : sequence of float or None
        ``best_estimator_``'s loss curve (trained on all the data).
    best_params : dict
        The best candidate's parameters (for the title).
    path : Path
    """
    figure = _figure(7.5, 4.8)
    ax = figure.subplots()
    drawn = []
    for k, fold in enumerate(fold_curves):
        if fold is None or not fold.loss_curve:
            continue
        curve = fold.loss_curve
        ax.plot(
            range(1, len(curve) + 1), curve, lw=1.6,
            label=f"fold {k} ({len(curve)} epochs, test {fold.score:.4g})",
        )  # fmt: skip
        drawn.extend(curve)
    if refit_curve:
        ax.plot(
            range(1, len(refit_curve) + 1), refit_curve, "k--", lw=1.4,
            label=f"refit on all data ({len(refit_curve)} epochs)",
        )  # fmt: skip
        drawn.extend(refit_curve)
    if drawn:
        if min(drawn) > 0 and max(drawn) > 10 * min(drawn):
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    else:
        ax.text(
            0.5, 0.5, "no loss curves: the lbfgs solver records none",
            ha="center", va="center", transform=ax.transAxes,
        )  # fmt: skip
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.grid(True, alpha=0.3)
    ax.set_title(
        "Loss curves of the best candidate, one per CV fold\n"
        + _wrap(describe_params(best_params)),
        fontsize=10,
    )
    figure.savefig(path)
    return path


def _wrap(text: str, width: int = 90) -> str:
    lines, line = [], ""
    for part in text.split(", "):
        candidate = f"{line}, {part}" if line else part
        if len(candidate) > width and line:
            lines.append(line + ",")
            line = part
        else:
            line = candidate
    return "\n".join([*lines, line])


def pack_groups(cv_results: dict, config: RunConfig) -> dict[str, list[int]]:
    """Group candidates by what separates packs: hidden layer sizes (and batch size
    when searched); lbfgs candidates train unfused and are grouped apart."""
    groups: dict[str, list[int]] = {}
    fixed = config.estimator_class(**config.params).get_params()
    for i, params in enumerate(cv_results["params"]):
        plain = {**fixed, **{plain_name(k): v for k, v in params.items()}}
        label = _label(tuple(np.atleast_1d(plain["hidden_layer_sizes"]).tolist()))
        if "batch_size" in config.space:
            label += f"\nbatch {plain['batch_size']}"
        if plain["solver"] == "lbfgs":
            label += "\nlbfgs (unfused)"
        groups.setdefault(label, []).append(i)
    return groups


def plot_time_per_pack(
    cv_results: dict,
    config: RunConfig,
    n_splits: int,
    path: Path,
    search_seconds: float | None = None,
) -> Path:
    """Bar chart of training seconds per network shape, from ``cv_results_``.

    Models of equal layer sizes are the ones that train together (in packs), so
    each bar sums ``mean_fit_time x n_splits`` (every model's share of its pack's
    time) over the candidates of one shape. Packs of different shapes may train
    at the same time (CPU worker threads, several GPUs), so the bars can add up
    to more than the search's wall time, drawn as a dashed line when given; the
    plot says so when they do.
    """
    groups = pack_groups(cv_results, config)
    fit = np.asarray(cv_results["mean_fit_time"], dtype=float) * n_splits
    labels = list(groups)
    seconds = [float(np.nansum(fit[members])) for members in groups.values()]
    figure = _figure(max(5.5, 1.6 * len(labels) + 2.5), 4.8)
    ax = figure.subplots()
    bars = ax.bar(range(len(labels)), seconds, color="tab:green", width=0.6)
    for bar, members, value in zip(bars, groups.values(), seconds, strict=True):
        ax.annotate(
            f"{value:.2f} s\n{len(members) * n_splits} models",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center", va="bottom", fontsize=8,
        )  # fmt: skip
    ax.set_xticks(range(len(labels)), [f"layers {lab}" for lab in labels])
    ax.set_xlabel("network shape (hidden layer sizes)")
    ax.set_ylabel("training time (s)")
    top = max([*seconds, search_seconds or 0.0]) * 1.3 or 1.0
    note = ""
    if search_seconds is not None:
        ax.axhline(search_seconds, color="0.3", ls="--", lw=1)
        ax.annotate(
            f"search wall time: {search_seconds:.2f} s",
            (0.01, search_seconds), xycoords=("axes fraction", "data"),
            va="bottom", fontsize=8, color="0.3",
        )  # fmt: skip
        if sum(seconds) > search_seconds:
            note = (
                "\nThe bars add up to more than the wall time: packs of\n"
                "different shapes trained at the same time."
            )
    ax.set_ylim(0, top)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(
        "Training time by network shape\n"
        "Models with the same layer sizes train together;\n"
        "a bar is their summed training time." + note,
        fontsize=9,
    )
    figure.savefig(path)
    return path


def write_plots(
    folder: Path,
    search,
    config: RunConfig,
    recorder,
    search_seconds: float | None = None,
) -> list[Path]:
    """Write the three plots into ``folder`` (created); return their paths.

    Parameters
    ----------
    folder : Path
    search : fitted GridSearchCV or RandomizedSearchCV
    config : RunConfig
    recorder : LossCurveRecorder
        The search's scorer, holding the fold models' loss curves.
    search_seconds : float, optional
        Wall time of the search, shown on the time plot.
    """
    folder.mkdir(parents=True, exist_ok=True)
    results = search.cv_results_
    names = [key.removeprefix("param_") for key in results if key.startswith("param_")]
    names = [n for n in names if n != getattr(search, "resource", None)]
    best = search.best_estimator_
    mlp = best[-1] if hasattr(best, "steps") else best
    paths = [
        plot_scores_by_param(results, config, names, folder / PLOT_FILES[0]),
        plot_loss_curves(
            recorder.fold_curves(search.best_params_, search.n_splits_),
            getattr(mlp, "loss_curve_", None),
            search.best_params_,
            folder / PLOT_FILES[1],
        ),
        plot_time_per_pack(
            results, config, search.n_splits_, folder / PLOT_FILES[2], search_seconds
        ),
    ]
    if "iter" in results:
        paths.append(plot_rungs(results, search, folder / RUNGS_FILE))
    return paths


RUNGS_FILE = "rungs.png"


def plot_rungs(cv_results: dict, search, path: Path) -> Path:
    """Plot halving: score against resource per candidate, survivors highlighted.

    Parameters
    ----------
    cv_results : dict
        A halving search's ``cv_results_`` (with ``iter`` and ``n_resources``).
    search : fitted HalvingGridSearchCV or HalvingRandomSearchCV
    path : Path
        Where to write the PNG.
    """
    iters = np.asarray(cv_results["iter"])
    resources = np.asarray(cv_results["n_resources"])
    means = np.asarray(cv_results["mean_test_score"], dtype=float)
    keys = [
        repr(sorted((k, repr(v)) for k, v in p.items() if k != search.resource))
        for p in cv_results["params"]
    ]
    last = iters.max()
    finalists = {keys[i] for i in np.flatnonzero(iters == last)}
    figure = _figure(7.5, 4.5)
    ax = figure.add_subplot()
    for key in dict.fromkeys(keys):
        rows = [i for i, k in enumerate(keys) if k == key]
        rows.sort(key=lambda i: iters[i])
        x, y = resources[rows], means[rows]
        if key in finalists:
            ax.plot(x, y, "o-", color="tab:blue", lw=1.6, ms=4, zorder=3)
        else:
            ax.plot(x, y, "o-", color="0.7", lw=0.8, ms=2.5, alpha=0.7, zorder=2)
    best = search.best_index_
    ax.plot(
        resources[best],
        means[best],
        "*",
        color="tab:red",
        ms=14,
        zorder=4,
        label=f"best: {means[best]:.4f}",
    )
    ax.set_xscale("log")
    ax.set_xticks(sorted(set(resources.tolist())))
    ax.set_xticklabels([str(r) for r in sorted(set(resources.tolist()))])
    ax.set_xlabel(f"resource ({plain_name(search.resource)}) per iteration")
    ax.set_ylabel("mean CV test score")
    ax.set_title(
        f"Successive halving: candidates {search.n_candidates_}; "
        "blue: reached the last iteration",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    figure.savefig(path)
    return path
