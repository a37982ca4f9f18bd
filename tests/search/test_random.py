"""RandomizedSearchCV against scikit-learn's, on the same inputs in the same test."""

import warnings

import numpy as np
import pytest
from scipy.stats import loguniform, randint, uniform
from sklearn import model_selection as sk
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

import torchhpo

from ._helpers import assert_same_scores, assert_same_structure, forbid_training


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def tiny_mlp(**params):
    defaults = dict(hidden_layer_sizes=(8,), max_iter=6, random_state=0, device="cpu")
    return torchhpo.MLPClassifier(**{**defaults, **params})


@pytest.mark.slow
def test_seed_random_search_with_loguniform_alpha(digits, capsys):
    """The seed's second code block: imports changed, alpha drawn log-uniformly."""
    X, y = digits
    from scipy.stats import loguniform

    from torchhpo import MLPClassifier, RandomizedSearchCV

    # 신경망 모델 초기화
    model = MLPClassifier()

    # 탐색할 hyperparameter 범위 설정
    param_dist = {
        "hidden_layer_sizes": [(50, 50), (100,)],
        "activation": ["relu", "tanh"],
        "solver": ["adam", "sgd"],
        "alpha": loguniform(0.0001, 0.001),
    }

    # 랜덤 탐색 수행
    random_search = RandomizedSearchCV(model, param_dist, cv=5, n_iter=10)
    random_search.fit(X, y)

    # 최적의 초매개변수 출력
    print("Best parameters:", random_search.best_params_)
    print("Best score:", random_search.best_score_)

    assert "Best score:" in capsys.readouterr().out
    alphas = random_search.cv_results_["param_alpha"]
    assert np.all((alphas >= 1e-4) & (alphas <= 1e-3))
    reference = sk.RandomizedSearchCV(
        SklearnMLPClassifier(max_iter=1), param_dist, cv=5, n_iter=10
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(X, y)
    assert_same_structure(
        random_search.cv_results_, reference.cv_results_, same_params=False
    )


def test_seed_randint_alpha_is_rejected_naming_alpha(digits_small, monkeypatch):
    """The seed's randint(0.0001, 0.001) cannot sample; say so before training."""
    X, y = digits_small
    param_dist = {
        "hidden_layer_sizes": [(50, 50), (100,)],
        "activation": ["relu", "tanh"],
        "solver": ["adam", "sgd"],
        "alpha": randint(0.0001, 0.001),
    }
    with pytest.raises(ValueError) as theirs:
        sk.RandomizedSearchCV(SklearnMLPClassifier(), param_dist, n_iter=10).fit(X, y)
    forbid_training(monkeypatch)
    search = torchhpo.RandomizedSearchCV(
        SklearnMLPClassifier(), param_dist, cv=5, n_iter=10
    )
    with pytest.raises(type(theirs.value), match="'alpha'") as ours:
        search.fit(X, y)
    message = str(ours.value)
    assert "scipy.stats.loguniform(0.0001, 0.001)" in message
    assert "randint" in message


@pytest.mark.parametrize(
    "param_distributions",
    [
        {"alpha": loguniform(1e-5, 1e-1), "solver": ["adam", "sgd"]},
        {"alpha": [1e-4, 1e-3, 1e-2], "solver": ["adam", "sgd"]},  # all lists
        [
            {"alpha": uniform(0, 1), "solver": ["sgd"]},
            {"hidden_layer_sizes": [(4,), (6,)], "learning_rate_init": [1e-2]},
        ],
    ],
)
def test_samples_the_candidates_scikit_learn_samples(digits_small, param_distributions):
    X, y = digits_small
    kwargs = dict(n_iter=5, cv=2, random_state=7)
    ours = torchhpo.RandomizedSearchCV(
        tiny_mlp(), param_distributions, progress=False, **kwargs
    ).fit(X, y)
    theirs = sk.RandomizedSearchCV(tiny_mlp(), param_distributions, **kwargs).fit(X, y)
    assert ours.cv_results_["params"] == theirs.cv_results_["params"]
    assert_same_structure(ours.cv_results_, theirs.cv_results_)
    assert_same_scores(ours.cv_results_, theirs.cv_results_)


def test_same_random_states_give_identical_scores(digits_small):
    X, y = digits_small
    param_distributions = {
        "alpha": loguniform(1e-5, 1e-1),
        "solver": ["adam", "sgd"],
        "early_stopping": [False, True],
    }

    def run():
        return torchhpo.RandomizedSearchCV(
            tiny_mlp(),
            param_distributions,
            n_iter=6,
            cv=sk.KFold(3, shuffle=True, random_state=0),
            random_state=0,
            progress=False,
        ).fit(X, y)

    first, second = run(), run()
    assert_same_scores(first.cv_results_, second.cv_results_)
    for a, b in zip(
        first.best_estimator_.coefs_, second.best_estimator_.coefs_, strict=True
    ):
        np.testing.assert_array_equal(a, b)
