"""The terminal leaderboard and the run folder's CSV, in the user's terms."""

import numpy as np

from torchhpo.cli._report import leaderboard, plain_cv_results


def _halving_results():
    # Iteration 0 scored higher with fewer resources than iteration 1's best:
    # scikit-learn ranks the last iteration's best 4th over all rows.
    means = [0.95, 0.94, 0.93, 0.50, 0.90, 0.80]
    return {
        "iter": np.array([0, 0, 0, 0, 1, 1]),
        "n_resources": np.array([10, 10, 10, 10, 20, 20]),
        "mean_test_score": np.array(means),
        "std_test_score": np.zeros(6),
        "rank_test_score": np.array([1, 2, 3, 6, 4, 5]),
        "mean_fit_time": np.zeros(6),
        "param_mlp__alpha": np.array([1e-4, 1e-3, 1e-2, 1e-1, 1e-4, 1e-3]),
        "params": [{"mlp__alpha": a} for a in (1e-4, 1e-3, 1e-2, 1e-1, 1e-4, 1e-3)],
    }


def test_halving_leaderboard_opens_at_rank_one():
    table = leaderboard(_halving_results(), top=3)
    header, _, first, second, third = table.splitlines()
    assert header.split()[:3] == ["rank", "in", "iter"]
    assert first.split()[0] == "1" and first.split()[6] == "1"  # iteration 1
    assert second.split()[0] == "2" and second.split()[6] == "1"
    assert third.split()[0] == "1" and third.split()[6] == "0"


def test_csv_columns_use_the_config_names():
    plain = plain_cv_results(_halving_results())
    assert "param_alpha" in plain and "param_mlp__alpha" not in plain
    assert plain["params"][0] == {"alpha": 1e-4}
    assert list(plain)[:5] == list(_halving_results())[:5]
