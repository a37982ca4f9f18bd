"""The version is declared once, in torchhpo/_version.py."""

import ast
import json
import sys
from pathlib import Path

import pytest

import torchhpo
from torchhpo import _version
from torchhpo.search._checkpoint import Journal

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

PACKAGE = Path(torchhpo.__file__).parent


def test_the_package_and_pyproject_read_version_py():
    assert torchhpo.__version__ == _version.__version__
    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    declared = pyproject["tool"]["setuptools"]["dynamic"]["version"]
    assert declared == {"attr": "torchhpo._version.__version__"}


def _root_imports(path: Path) -> list[str]:
    """Names a module imports from the package's ``__init__`` (not submodules)."""
    depth = len(path.relative_to(PACKAGE).parts) - 1
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        root = (node.level == depth + 1 and node.module is None) or (
            node.level == 0 and node.module == "torchhpo"
        )
        if root:
            names += [
                a.name
                for a in node.names
                if not (PACKAGE / a.name).is_dir()
                and not (PACKAGE / f"{a.name}.py").exists()
            ]
    return names


def test_no_module_reaches_back_up_to_the_package_root():
    found = {
        str(path.relative_to(PACKAGE)): names
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py" or path.parent != PACKAGE
        if (names := _root_imports(path))
    }
    assert found == {}


def test_a_checkpoint_header_records_the_version(tmp_path):
    journal = Journal.open(tmp_path / "search.journal", {"fingerprint": 1})
    journal.close()
    header = json.loads((tmp_path / "search.journal").read_text().splitlines()[0])
    assert header["torchhpo"] == _version.__version__
