"""The activation table (torchhpo/engine/activations.py) against its other forms.

Every form of an activation (in-place training, derivative, prediction on NumPy and
torch, ``torch.nn`` module, C code) comes from one registry entry; these tests hold
the forms against each other, the C codes against ``kernels.c``, and check that no
other module writes its own activation table.
"""

import ast
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import torchhpo
from torchhpo.engine.activations import HIDDEN, OUTPUT

KERNELS = Path(torchhpo.__file__).parent / "engine" / "native" / "kernels.c"

#: How each derivative reads in the C backward epilogue (whitespace removed).
C_FORMULAS = {
    "relu": ("==0?0",),
    "tanh": ("*=1-ai[j]*ai[j]",),
    "logistic": ("*=ai[j];", "*=1-ai[j];"),
}


def _constants(source: str) -> dict[str, int]:
    """``#define NAME N`` and enumerators, so codes written as names resolve."""
    values = {
        m[1]: int(m[2]) for m in re.finditer(r"#define\s+(\w+)\s+(\d+)\b", source)
    }
    for body in re.findall(r"enum\s*\w*\s*\{(.*?)\}", source, re.S):
        code = -1
        for item in re.sub(r"/\*.*?\*/", "", body, flags=re.S).split(","):
            name, _, value = (part.strip() for part in item.partition("="))
            if not name:
                continue
            code = int(value, 0) if value else code + 1
            values[name] = code
    return values


def c_activation_codes(source: str) -> dict[str, int]:
    """Read the hidden activations' codes from the C epilogues' source."""

    def code(token: str) -> int:
        return int(token) if token.isdigit() else constants[token]

    constants = _constants(source)
    backward = source[source.index("hidden_backward_") :]
    switch = backward[backward.index("switch") : backward.index("default:")]
    codes = {}
    for token, body in re.findall(r"case\s+(\w+)\s*:(.*?)break;", switch, re.S):
        flat = re.sub(r"\s|\\", "", body)
        for name, pieces in C_FORMULAS.items():
            if all(piece in flat for piece in pieces):
                codes[name] = code(token)
    forward = source[source.index("hidden_forward_") : source.index("hidden_backward_")]
    relu_tests = {code(t) for t in re.findall(r"act\[i\]\s*==\s*(\w+)", forward)}
    assert len(relu_tests) == 1, relu_tests
    codes["relu_forward"] = relu_tests.pop()
    identity = re.search(r"(\w+) identity \(none\)", source)
    codes["identity"] = code(identity[1])
    return codes


def registry_codes() -> dict[str, int]:
    codes = {name: a.c_code for name, a in HIDDEN.items()}
    return {**codes, "relu_forward": codes["relu"]}


def test_c_codes_match_kernels_c():
    assert c_activation_codes(KERNELS.read_text()) == registry_codes()


def test_code_check_sees_swapped_codes():
    source = KERNELS.read_text()
    swapped = source.replace("case 2:", "case @:").replace("case 3:", "case 2:")
    swapped = swapped.replace("case @:", "case 3:")
    assert c_activation_codes(swapped) != registry_codes()
    named = "#define ACT_TANH 2\n" + source.replace("case 2:", "case ACT_TANH:")
    assert c_activation_codes(named) == registry_codes()


@pytest.fixture
def z():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(3, 5, 4, generator=generator, dtype=torch.float64) * 3


@pytest.mark.parametrize("name", sorted(set(HIDDEN) | set(OUTPUT)))
def test_every_form_computes_the_same_function(name, z):
    activation = {**HIDDEN, **OUTPUT}[name]
    expected = activation.module()(z)
    inplace = z.clone()
    activation.forward_(inplace)
    torch.testing.assert_close(inplace, expected)
    torch.testing.assert_close(activation.predict(z, torch), expected)
    on_host = activation.predict(z.numpy().copy(), np)
    np.testing.assert_allclose(on_host, expected.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", sorted(HIDDEN))
def test_derivatives_are_autograds(name, z):
    activation = HIDDEN[name]
    x = z.clone().requires_grad_(True)
    a = activation.module()(x)
    delta = torch.randn_like(a)
    (expected,) = torch.autograd.grad(a, x, delta)
    a = a.detach()
    torch.testing.assert_close(activation.derivative(a, delta), expected)
    inplace = delta.clone()
    activation.derivative_(a, inplace)
    torch.testing.assert_close(inplace, expected)


def test_names_are_scikit_learns():
    from sklearn.neural_network import MLPClassifier
    from sklearn.neural_network._base import ACTIVATIONS

    (options,) = MLPClassifier._parameter_constraints["activation"]
    assert set(HIDDEN) == options.options
    assert set(HIDDEN) | set(OUTPUT) == set(ACTIVATIONS)


def _activation_tables(source: str) -> list[int]:
    """Lines of dict displays keyed by more than one activation name."""
    names = set(HIDDEN)
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if len(keys & names) > 1:
                lines.append(node.lineno)
    return lines


def test_no_module_writes_its_own_activation_table():
    package = Path(torchhpo.__file__).parent
    tables = {
        str(path.relative_to(package)): lines
        for path in sorted(package.rglob("*.py"))
        if path.name != "activations.py"
        if (lines := _activation_tables(path.read_text(encoding="utf-8")))
    }
    assert tables == {}
    assert _activation_tables('T = {"relu": f, "tanh": g}\n') == [1]
