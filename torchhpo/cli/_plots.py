"""The run folder's PNG plots (matplotlib, the optional ``plots`` extra).

* ``scores_by_param.png``: for each searched parameter, the mean CV test score of
  every candidate against its value, with ± one standard deviation over folds as
  bars; the best candidate per value is drawn in colour, the overall best starred.
* ``loss_curves.png``: the best candidate's training loss per epoch on each CV fold
  (the fold models the search scored, recorded as it scored them), and the refit on
  all the data.
* ``time_per_pack.png``: training time per pack. The search reports each model's
  share of its pack's time, not pack timings, so the bars sum those shares over
  the models of one architecture (models of equal shapes are the ones that train
  together, as one pack or, past the engine's pack-size cap, a few); the title
  says so.
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
from ._config import Distribution, RunConfig
from ._recorder import FoldCurve

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
    return str(value)


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
    best = int(np.nanargmax(means)) if np.isfinite(means).any() else None
    n_cols = min(3, len(names))
    n_rows = math.ceil(len(names) / n_cols)
    figure = _figure(4.4 * n_cols, 3.6 * n_rows + 0.5)
    axes = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
    for ax, name in zip(axes, names, strict=False):
        values = list(cv_results[f"param_{name}"])
        written = config.space[plain_name(name)]
        if isinstance(written, Distribution):
            x = np.asarray(values, dtype=float)
            ax.errorbar(
                x, means, yerr=stds, fmt="o", ms=4, color="tab:blue",
                ecolor="0.6", elinewidth=1, capsize=2, alpha=0.85,
            )  # fmt: skip
            if written.kind == "loguniform":
                ax.set_xscale("log")
            if best is not None:
                ax.plot(x[best], means[best], "*", ms=14, color="tab:red", zorder=5)
        else:
            order = [_label(v) for v in written]
            _categorical(ax, values, order, means, stds, best)
        ax.set_title(plain_name(name))
        ax.set_ylabel(f"mean test {config.scoring or 'score'}")
        ax.grid(True, axis="y", alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    n_splits = sum(key.startswith("split") for key in cv_results if "_test_" in key)
    figure.suptitle(
        f"Mean CV test {config.scoring or 'score'} per parameter value "
        f"(bars: ± std over {n_splits} folds; ★ best candidate)"
    )
    figure.savefig(path)
    return path


def _categorical(ax, values: list, order: list[str], means, stds, best) -> None:
    """Candidates at their value's position (jittered, values in the config's
    order); per value, the best in colour."""
    present = {_label(v) for v in values}
    labels = [label for label in dict.fromkeys(order) if label in present]
    position = {label: i for i, label in enumerate(labels)}
    slots = np.array([position[_label(v)] for v in values], dtype=float)
    offsets = np.zeros(len(values))
    for i in range(len(labels)):
        members = np.flatnonzero(slots == i)
        if len(members) > 1:
            offsets[members] = np.linspace(-0.25, 0.25, len(members))
    x = slots + offsets
    ax.errorbar(
        x, means, yerr=stds, fmt="o", ms=4, color="0.55", ecolor="0.75",
        elinewidth=1, capsize=2,
    )  # fmt: skip
    for i in range(len(labels)):
        members = np.flatnonzero(slots == i)
        finite = members[np.isfinite(means[members])]
        if len(finite) == 0:
            continue
        top = finite[np.argmax(means[finite])]
        ax.errorbar(
            x[top], means[top], yerr=stds[top], fmt="o", ms=7, color="tab:blue",
            ecolor="tab:blue", elinewidth=2, capsize=4, zorder=4,
        )  # fmt: skip
    if best is not None:
        ax.plot(x[best], means[best], "*", ms=14, color="tab:red", zorder=5)
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
        label = str(tuple(np.atleast_1d(plain["hidden_layer_sizes"]).tolist()))
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
    """Bar chart of training seconds per pack, from ``cv_results_`` fit times.

    Each bar sums ``mean_fit_time x n_splits`` (every model's share of its pack's
    time) over the candidates of one architecture. On a CPU, packs train
    concurrently on worker threads, so the bars may add up to more than the
    search's wall time, drawn as a dashed line when given.
    """
    groups = pack_groups(cv_results, config)
    fit = np.asarray(cv_results["mean_fit_time"], dtype=float) * n_splits
    labels = list(groups)
    seconds = [float(fit[members].sum()) for members in groups.values()]
    figure = _figure(max(5.0, 1.6 * len(labels) + 2.5), 4.6)
    ax = figure.subplots()
    bars = ax.bar(range(len(labels)), seconds, color="tab:green", width=0.6)
    for bar, members, value in zip(bars, groups.values(), seconds, strict=True):
        ax.annotate(
            f"{value:.2f} s\n{len(members) * n_splits} models",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center", va="bottom", fontsize=8,
        )  # fmt: skip
    ax.set_xticks(range(len(labels)), [f"hidden {lab}" for lab in labels])
    ax.set_ylabel("training time (s)")
    top = max([*seconds, search_seconds or 0.0]) * 1.25 or 1.0
    if search_seconds is not None:
        ax.axhline(search_seconds, color="0.3", ls="--", lw=1)
        ax.annotate(
            f"whole search, wall clock: {search_seconds:.2f} s "
            "(packs may train concurrently)",
            (0.01, search_seconds), xycoords=("axes fraction", "data"),
            va="bottom", fontsize=8, color="0.3",
        )  # fmt: skip
    ax.set_ylim(0, top)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(
        "Training time per architecture (its models train together in packs)\n"
        "sum of each model's share of its pack's time, from cv_results_ fit "
        "times:\nthe search reports no per-pack timings of its own",
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
