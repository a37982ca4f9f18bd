"""pyproject.toml's floors leave out versions with known code-execution advisories."""

import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
requirements = pytest.importorskip("packaging.requirements")

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

#: Versions that must be refused: torch.load(weights_only=True) ran code before
#: 2.6 (CVE-2025-32434) and before 2.10 (CVE-2026-24747); pyarrow 14.0.0 ran code
#: reading Parquet (CVE-2023-47248).
VULNERABLE = {"torch": ["2.2.0", "2.5.1", "2.9.1"], "pyarrow": ["14.0.0"]}


def _requirements():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    listed = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        listed += extra
    return [requirements.Requirement(text) for text in listed]


@pytest.mark.parametrize("name", sorted(VULNERABLE))
def test_vulnerable_versions_are_not_allowed(name):
    found = [r for r in _requirements() if r.name == name]
    assert found  # the package is required somewhere
    for requirement in found:
        for version in VULNERABLE[name]:
            assert version not in requirement.specifier, (str(requirement), version)


def test_model_tensors_need_no_unpickler():
    names = {r.name for r in _requirements()}
    assert "safetensors" in names
