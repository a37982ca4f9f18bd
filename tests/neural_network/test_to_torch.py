"""``to_torch()``: the fitted model as a plain torch module, held against the
estimator's own ``predict_proba`` / ``predict`` in float64, trained further, and
exported with ``torch.export`` and ONNX (skipped where the exporters are missing).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.datasets import make_classification, make_regression
from sklearn.exceptions import NotFittedError

import torchhpo as th
from torchhpo.neural_network._to_torch import HIDDEN_ACTIVATIONS

QUIET = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

X, Y_BINARY = make_classification(
    n_samples=60, n_features=5, n_informative=3, random_state=0
)
_, Y_MULTI = make_classification(
    n_samples=60, n_features=5, n_informative=3, n_classes=3, random_state=0
)
Y_MULTILABEL = np.c_[Y_BINARY, Y_MULTI == 2, X[:, 0] > 0].astype(int)
X_REG, Y_REG = make_regression(n_samples=60, n_features=5, noise=1.0, random_state=0)
Y_REG2 = np.c_[Y_REG, -0.5 * Y_REG]
Y_COUNTS = np.random.default_rng(0).poisson(np.exp(X_REG[:, 0] / 2))

ACTIVATIONS = sorted(HIDDEN_ACTIVATIONS)
TARGETS = {
    "binary": (X, np.where(Y_BINARY == 1, "yes", "no")),
    "multiclass": (X, Y_MULTI),
    "multilabel": (X, Y_MULTILABEL),
    "regression": (X_REG, Y_REG),
    "regression-2d": (X_REG, Y_REG2),
    "poisson": (X_REG, Y_COUNTS),
}


def _fit(kind: str, activation: str = "relu", dtype: str = "float64"):
    X_, y = TARGETS[kind]
    common = dict(
        hidden_layer_sizes=(7, 4),
        activation=activation,
        max_iter=30,
        random_state=0,
        device="cpu",
        dtype=dtype,
    )
    if kind.startswith("regression"):
        model = th.MLPRegressor(**common)
    elif kind == "poisson":
        model = th.MLPRegressor(loss="poisson", learning_rate_init=1e-3, **common)
    else:
        model = th.MLPClassifier(**common)
    return model.fit(X_, y), X_


def _expected(model, X_):
    return model.predict_proba(X_) if hasattr(model, "classes_") else model.predict(X_)


@QUIET
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("kind", list(TARGETS))
def test_forward_equals_predict(kind, activation):
    model, X_ = _fit(kind, activation)
    module = model.to_torch(device="cpu")
    assert isinstance(module, torch.nn.Sequential)
    with torch.no_grad():
        out = module(torch.from_numpy(X_)).numpy()
    expected = _expected(model, X_)
    assert out.dtype == np.float64
    assert out.shape == expected.shape
    assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@QUIET
def test_only_torch_modules_and_the_model_dtype():
    X32 = X.astype(np.float32)  # coefs_ take the input's dtype, as scikit-learn's
    model = th.MLPClassifier(
        hidden_layer_sizes=(7,), max_iter=20, random_state=0, dtype="float32"
    ).fit(X32, Y_MULTI)
    assert model.coefs_[0].dtype == np.float32
    module = model.to_torch(device="cpu")
    assert {type(m).__module__.split(".")[0] for m in module} == {"torch"}
    assert all(p.dtype == torch.float32 for p in module.parameters())
    with torch.no_grad():
        out = module(torch.from_numpy(X32)).numpy()
    assert_allclose(out, model.predict_proba(X32), rtol=1e-5, atol=1e-6)


@QUIET
def test_binary_columns_are_predict_probas():
    model, X_ = _fit("binary")
    module = model.to_torch(device="cpu")
    last = module[-2]
    assert last.out_features == 2
    assert torch.all(last.weight[0] == 0) and last.bias[0] == 0
    with torch.no_grad():
        out = module(torch.from_numpy(X_)).numpy()
    assert_allclose(out.sum(axis=1), 1.0, atol=1e-12)


@pytest.mark.slow
@QUIET
@pytest.mark.parametrize("kind", ["binary", "regression"])
def test_trainable_and_independent_of_the_estimator(kind):
    model, X_ = _fit(kind)
    before_coefs = [c.copy() for c in model.coefs_]
    module = model.to_torch(device="cpu")
    inputs = torch.from_numpy(X_)
    with torch.no_grad():
        before = module(inputs).clone()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        module(inputs).square().mean().backward()
        optimizer.step()
    with torch.no_grad():
        after = module(inputs)
    assert not torch.allclose(before, after)
    for coef, saved in zip(model.coefs_, before_coefs, strict=True):
        np.testing.assert_array_equal(coef, saved)
    if kind == "binary":
        assert_allclose(after.sum(dim=1).numpy(), 1.0, atol=1e-12)


@pytest.mark.slow
@QUIET
def test_best_estimator_of_a_search():
    search = th.GridSearchCV(
        th.MLPClassifier(
            hidden_layer_sizes=(5,), max_iter=20, random_state=0, dtype="float64"
        ),
        {"alpha": [1e-4, 1e-2]},
        cv=2,
        device="cpu",
        progress=False,
    ).fit(X, Y_MULTI)
    module = search.best_estimator_.to_torch(device="cpu")
    with torch.no_grad():
        out = module(torch.from_numpy(X)).numpy()
    assert_allclose(out, search.predict_proba(X), rtol=1e-12, atol=1e-12)


@QUIET
def test_scikit_learns_own_fitted_mlp():
    from sklearn.neural_network import MLPClassifier as SkMLP

    from torchhpo.neural_network import to_torch_module

    model = SkMLP(hidden_layer_sizes=(6,), max_iter=20, random_state=0).fit(X, Y_BINARY)
    with torch.no_grad():
        out = to_torch_module(model)(torch.from_numpy(X)).numpy()
    assert_allclose(out, model.predict_proba(X), rtol=1e-12, atol=1e-12)


@QUIET
@pytest.mark.cuda
def test_on_cuda():
    model, X_ = _fit("multiclass")
    module = model.to_torch(device="cuda")
    assert next(module.parameters()).device.type == "cuda"
    with torch.no_grad():
        out = module(torch.from_numpy(X_).cuda()).cpu().numpy()
    assert_allclose(out, model.predict_proba(X_), rtol=1e-10, atol=1e-12)


def test_not_fitted():
    with pytest.raises(NotFittedError):
        th.MLPClassifier().to_torch()


@pytest.mark.slow
@QUIET
@pytest.mark.parametrize("kind", ["binary", "multilabel", "poisson"])
def test_torch_export_round_trip(kind):
    model, X_ = _fit(kind)
    module = model.to_torch(device="cpu").eval()
    inputs = torch.from_numpy(X_)
    batch = torch.export.Dim("batch", min=2)
    exported = torch.export.export(module, (inputs[:4],), dynamic_shapes=({0: batch},))
    with torch.no_grad():
        out = exported.module()(inputs).numpy()
    assert_allclose(out, _expected(model, X_), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
@QUIET
@pytest.mark.filterwarnings("ignore::FutureWarning")  # the exporter's own
@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_onnx_round_trip(kind, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model, X_ = _fit(kind)
    module = model.to_torch(device="cpu").eval()
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        module,
        (torch.from_numpy(X_[:4]),),
        str(path),
        input_names=["X"],
        output_names=["y"],
        dynamic_shapes=({0: torch.export.Dim("batch", min=2)},),
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"X": X_})
    assert_allclose(out, _expected(model, X_), rtol=1e-10, atol=1e-12)


@QUIET
def test_module_takes_the_dtype_the_model_trained_in():
    # float64 X, float32 training (dtype's default): coefs_ are float64 as
    # scikit-learn's rule says, the module is float32 as the training was.
    model = th.MLPClassifier(hidden_layer_sizes=(7,), max_iter=20, random_state=0)
    model.fit(X, Y_MULTI)
    assert model.coefs_[0].dtype == np.float64
    module = model.to_torch(device="cpu")
    assert all(p.dtype == torch.float32 for p in module.parameters())
    with torch.no_grad():
        out = module(torch.from_numpy(X.astype(np.float32))).numpy()
    assert_allclose(out, model.predict_proba(X), rtol=1e-5, atol=1e-6)
    wide = model.to_torch(device="cpu", dtype="float64")
    assert all(p.dtype == torch.float64 for p in wide.parameters())
    assert all(
        p.dtype == torch.float64
        for p in model.to_torch(device="cpu", dtype=torch.float64).parameters()
    )
    with pytest.raises(ValueError, match="'dtype' parameter"):
        model.to_torch(dtype="float16")


@QUIET
def test_scikit_learn_models_keep_their_dtype():
    from sklearn.neural_network import MLPClassifier as SkMLP

    from torchhpo.neural_network import to_torch_module

    model = SkMLP(hidden_layer_sizes=(7,), max_iter=20, random_state=0).fit(X, Y_MULTI)
    module = to_torch_module(model, device="cpu")
    assert all(p.dtype == torch.float64 for p in module.parameters())
