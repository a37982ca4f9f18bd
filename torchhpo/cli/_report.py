"""The terminal summary of a run: the leaderboard and where the run folder is."""

from __future__ import annotations

import numpy as np

from ._build import plain_name


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def plain_cv_results(cv_results: dict) -> dict:
    """Return ``cv_results_`` in the config's parameter names, for the run folder.

    ``param_mlp__alpha`` becomes ``param_alpha`` and each ``params`` dict is keyed
    ``alpha``: the names of the config, the leaderboard and ``best_params.json``.
    """
    out = {}
    for key, values in cv_results.items():
        if key.startswith("param_"):
            key = "param_" + plain_name(key.removeprefix("param_"))
        elif key == "params":
            values = [{plain_name(k): v for k, v in p.items()} for p in values]
        out[key] = values
    return out


def _rank_within_iteration(cv_results: dict) -> np.ndarray:
    """Each row's rank among the rows of its halving iteration (1: best score).

    scikit-learn ranks a halving search's rows over all iterations, so the best
    candidate of the last iteration can hold rank 4 behind rows scored with fewer
    resources; the leaderboard ranks each iteration on its own.
    """
    from scipy.stats import rankdata

    iters = np.asarray(cv_results["iter"])
    means = np.asarray(cv_results["mean_test_score"], dtype=float)
    ranks = np.empty(len(means), dtype=int)
    for k in np.unique(iters):
        rows = np.flatnonzero(iters == k)
        key = np.where(np.isfinite(means[rows]), -means[rows], np.inf)
        ranks[rows] = rankdata(key, method="min").astype(int)
    return ranks


def leaderboard(cv_results: dict, *, top: int = 5, scoring: str | None = None) -> str:
    """Return a table of the ``top`` candidates by rank.

    Columns: rank, mean ± std test score, mean fit time per fold model (its share
    of its pack's time), and the searched parameters (config names).

    Parameters
    ----------
    cv_results : dict
        A search's ``cv_results_``.
    top : int
        Rows to show.
    scoring : str, optional
        The scorer name for the header (None: ``score``).
    """
    ranks = np.asarray(cv_results["rank_test_score"])
    halving = "iter" in cv_results
    if halving:
        # Candidates that reached the furthest iteration first, then by their
        # rank within their iteration.
        ranks = _rank_within_iteration(cv_results)
        iters = np.asarray(cv_results["iter"])
        order = np.lexsort((np.arange(len(ranks)), ranks, -iters))[:top]
    else:
        order = np.lexsort((np.arange(len(ranks)), ranks))[:top]
    names = [k.removeprefix("param_") for k in cv_results if k.startswith("param_")]
    header = [
        "rank in iter" if halving else "rank",
        f"{scoring or 'score'} (mean ± std)",
        "fit time",
    ]
    if halving:
        header += ["iter", "resources"]
    header += [plain_name(n) for n in names]
    rows = []
    for i in order:
        mean = cv_results["mean_test_score"][i]
        std = cv_results["std_test_score"][i]
        score = "failed" if not np.isfinite(mean) else f"{mean:.4f} ± {std:.4f}"
        params = cv_results["params"][i]
        rows.append(
            [
                str(ranks[i]),
                score,
                f"{cv_results['mean_fit_time'][i]:.2f} s",
                *(
                    [str(cv_results["iter"][i]), str(cv_results["n_resources"][i])]
                    if halving
                    else []
                ),
                *[_value(params[n]) if n in params else "" for n in names],
            ]
        )
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
    right = {0, 1, 2, 3, 4} if halving else {0, 1, 2}

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if j in right else c.ljust(w)
            for j, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def summary(search, *, top: int, scoring: str | None, seconds: float, folder) -> str:
    """Return the lines printed after a run: leaderboard, best, run folder."""
    results = search.cv_results_
    n_candidates = len(results["params"])
    shown = min(top, n_candidates)
    title = (
        f"Leaderboard: top {shown} of {n_candidates} candidates, "
        f"{search.n_splits_}-fold CV, search took {seconds:.1f} s "
        "(fit time: mean per fold model, its share of its pack's time)"
    )
    if "iter" in results:
        title = (
            f"Successive halving: {len(search.n_resources_)} iterations, resources "
            f"{search.n_resources_}, candidates {search.n_candidates_}\n"
            f"Leaderboard: top {shown} of {n_candidates} (candidate, iteration) rows, "
            "furthest iteration first, "
            f"{search.n_splits_}-fold CV, search took {seconds:.1f} s "
            "(fit time: mean per fold model, the epochs it added in that iteration)"
        )
    best = ", ".join(
        f"{plain_name(k)}={_value(v)}" for k, v in search.best_params_.items()
    )
    return "\n".join(
        [
            "",
            title,
            leaderboard(results, top=top, scoring=scoring),
            "",
            f"Best: {best}  ({scoring or 'score'} {search.best_score_:.4f})",
            f"Run folder: {folder}",
        ]
    )
