"""The fence around scikit-learn's internals (torchhpo/_sklearn_compat.py).

Only ``_sklearn_compat`` imports private scikit-learn names, and the scikit-learn
functions torchhpo copied or depends on by shape still have the source they had
when torchhpo was written against them.
"""

import ast
import inspect
from pathlib import Path

import pytest

import torchhpo
from torchhpo import _sklearn_compat
from torchhpo._sklearn_compat import (
    GUARDED_SOURCES,
    changed_sources,
    resolve,
    source_digest,
)

PACKAGE = Path(torchhpo.__file__).parent
COPIED_FIT = "sklearn.model_selection._search.BaseSearchCV.fit"


def _private(dotted: str) -> bool:
    return any(part.startswith("_") for part in dotted.split("."))


def private_sklearn_imports(source: str) -> list[str]:
    """Return ``module:name`` for each private scikit-learn name a module imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.level or node.module.split(".")[0] != "sklearn":
                continue
            for alias in node.names:
                if _private(node.module) or alias.name.startswith("_"):
                    found.append(f"{node.module}:{alias.name}")
        elif isinstance(node, ast.Import):
            found += [
                a.name
                for a in node.names
                if a.name.split(".")[0] == "sklearn" and _private(a.name)
            ]
    return found


def test_only_the_compat_module_imports_private_sklearn_names():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_sklearn_compat.py" and path.parent == PACKAGE:
            continue
        found = private_sklearn_imports(path.read_text(encoding="utf-8"))
        if found:
            offenders[str(path.relative_to(PACKAGE))] = found
    assert offenders == {}


def test_the_import_check_sees_private_names():
    source = (
        "from sklearn.utils import _safe_indexing, check_array\n"
        "from sklearn.model_selection._search import BaseSearchCV\n"
        "import sklearn.utils._param_validation\n"
        "from sklearn.utils import check_random_state\n"
        "from ._base import _private_of_our_own\n"
    )
    assert private_sklearn_imports(source) == [
        "sklearn.utils:_safe_indexing",
        "sklearn.model_selection._search:BaseSearchCV",
        "sklearn.utils._param_validation",
    ]


def test_the_compat_module_exports_what_it_imports():
    for name in _sklearn_compat.__all__:
        assert hasattr(_sklearn_compat, name), name


def test_guarded_sklearn_sources_are_unchanged():
    """Fails, naming the function, when scikit-learn changed code torchhpo copied."""
    changed = changed_sources()
    assert not changed, (
        "scikit-learn changed functions torchhpo copied or depends on; carry the "
        "changes over, then record the new digests in torchhpo/_sklearn_compat.py:\n"
        + "\n".join(changed)
    )


def test_tripwire_fires_on_a_changed_copy_of_the_source():
    real = inspect.getsource(resolve(COPIED_FIT))
    changed = real.replace("self.best_index_ = ", "self.best_index_ = 1 + ", 1)
    assert changed != real

    def source_of(name):
        return changed if name == COPIED_FIT else inspect.getsource(resolve(name))

    fired = changed_sources(source_of=source_of)
    assert len(fired) == 1
    assert fired[0].startswith(COPIED_FIT + " (")
    assert GUARDED_SOURCES[COPIED_FIT][0] in fired[0]


def test_digest_ignores_formatting_comments_and_docstrings():
    plain = "def f(a, b):\n    return a + b\n"
    dressed = (
        '    def f(a,\n          b):\n        """Add."""\n'
        "        # the sum\n        return (a + b)\n"
    )
    assert source_digest(plain) == source_digest(dressed)
    assert source_digest(plain) != source_digest(plain.replace("+", "-"))


def test_resolve_names_an_unknown_function():
    with pytest.raises(AttributeError, match="no_such_method"):
        resolve("sklearn.model_selection._search.BaseSearchCV.no_such_method")
