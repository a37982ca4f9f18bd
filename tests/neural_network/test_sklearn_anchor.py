"""What scikit-learn's own MLP tests read from a fitted model, side by side (issue 19).

``test_mlp.py`` reads private attributes (``_optimizer``, ``_loss_grad_lbfgs``) and
fits a diverging model with early stopping; torchhpo's MLPs answer as scikit-learn's.
"""

import warnings

import numpy as np
import pytest
from sklearn import neural_network as sk
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelBinarizer

import torchhpo as th

X_IRIS, Y_IRIS = load_iris(return_X_y=True)


@pytest.mark.parametrize("learning_rate", ["constant", "invscaling"])
def test_optimizer_learning_rate_after_warm_start_fits(learning_rate):
    X = [[3, 2], [1, 6], [5, 6], [-2, -4]]
    y = [1, 1, 1, 0]
    params = dict(
        solver="sgd",
        hidden_layer_sizes=4,
        learning_rate=learning_rate,
        max_iter=1,
        power_t=0.25,
        warm_start=True,
    )
    rates = {}
    for module in (sk, th):
        mlp = module.MLPClassifier(**params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            mlp.fit(X, y)
            first = mlp._optimizer.learning_rate
            mlp.fit(X, y)
        rates[module] = (first, mlp._optimizer.learning_rate)
    assert rates[th] == rates[sk]


def test_adaptive_learning_rate_is_lowered_until_training_stops():
    clf = th.MLPClassifier(
        tol=0.5, max_iter=3000, solver="sgd", learning_rate="adaptive"
    )
    clf.fit([[3, 2], [1, 6]], [1, 0])
    assert clf.n_iter_ < clf.max_iter
    assert clf._optimizer.learning_rate < 1e-6


def test_no_optimizer_before_a_stochastic_fit():
    for mlp in (th.MLPClassifier(), th.MLPClassifier(solver="lbfgs", max_iter=2)):
        assert not hasattr(mlp, "_optimizer")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X_IRIS, Y_IRIS)
    assert not hasattr(mlp, "_optimizer")


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("n_labels", [2, 3])
def test_loss_grad_lbfgs_equals_scikit_learns(activation, n_labels):
    rng = np.random.RandomState(42)
    X = rng.rand(5, 10)
    y = 1 + np.mod(np.arange(5) + 1, n_labels)
    Y = LabelBinarizer().fit_transform(y)
    params = dict(
        activation=activation,
        hidden_layer_sizes=10,
        solver="lbfgs",
        alpha=1e-5,
        max_iter=1,
        random_state=1,
    )
    models = {}
    for module in (sk, th):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            models[module] = module.MLPClassifier(**params).fit(X, y)
    ref = models[sk]
    theta = np.hstack([a.ravel() for a in ref.coefs_ + ref.intercepts_])
    theta = theta + 0.1 * rng.standard_normal(theta.shape)
    n = ref.n_layers_ - 1
    work = ([X, *[None] * n], [None] * n, [None] * n, [None] * n)
    expected = ref._loss_grad_lbfgs(theta, X, Y, None, *work)
    got = models[th]._loss_grad_lbfgs(theta, X, Y, None, *work)
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-12)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-9, atol=1e-12)


def test_diverging_model_with_early_stopping_fits_as_scikit_learn():
    # test_mlp.py::test_mlp_diverging_loss (scikit-learn issue 29504).
    params = dict(
        hidden_layer_sizes=100,
        activation="identity",
        solver="sgd",
        learning_rate_init=1,
        max_iter=20,
        early_stopping=True,
        n_iter_no_change=10,
        random_state=0,
    )
    models = {}
    for module in (sk, th):
        mlp = module.MLPRegressor(**params)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            np.seterr(all="ignore")
            try:
                mlp.fit(X_IRIS, Y_IRIS)
            finally:
                np.seterr(all="warn")
        models[module] = mlp
        assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
    ours, theirs = models[th], models[sk]
    assert np.isnan(ours.validation_scores_[-1])
    assert isinstance(ours.validation_scores_[-1], float)
    for name in ("n_iter_", "t_", "_no_improvement_count"):
        assert getattr(ours, name) == getattr(theirs, name), name
    assert len(ours.validation_scores_) == len(theirs.validation_scores_)
    assert len(ours.loss_curve_) == len(theirs.loss_curve_)
    assert np.isnan(ours.loss_) and np.isnan(theirs.loss_)
    assert all(np.isfinite(w).all() for w in ours.coefs_ + ours.intercepts_)
    assert np.isfinite(ours.predict(X_IRIS)).all()


def test_diverging_model_without_early_stopping_still_fails():
    mlp = th.MLPRegressor(
        hidden_layer_sizes=100,
        activation="identity",
        solver="sgd",
        learning_rate_init=1,
        max_iter=20,
        random_state=0,
    )
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        mlp.fit(X_IRIS, Y_IRIS)


def test_diverging_classifier_with_early_stopping_fits_as_scikit_learn():
    params = dict(
        hidden_layer_sizes=100,
        activation="identity",
        solver="sgd",
        learning_rate_init=1,
        max_iter=20,
        early_stopping=True,
        n_iter_no_change=10,
        random_state=0,
    )
    models = {}
    for module in (sk, th):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            models[module] = module.MLPClassifier(**params).fit(X_IRIS * 100, Y_IRIS)
    ours, theirs = models[th], models[sk]
    assert ours.n_iter_ == theirs.n_iter_
    # The diverged model's validation accuracy stays a number (its NaN outputs
    # predict the first class, as scikit-learn's softmax makes them); which
    # number depends on the validation rows, drawn from another random stream.
    assert 0 <= ours.validation_scores_[-1] <= 1
    assert all(np.isfinite(w).all() for w in ours.coefs_ + ours.intercepts_)
    assert np.isfinite(ours.predict_proba(X_IRIS * 100)).all()
