"""The pages a user reads: README a user's page, the rest in a documentation site
that builds without warnings, and help text on every script option."""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"

#: The README's sections: what, install, seed before/after, quick start, the command
#: line, where the rest is, speed, set-up.
USER_SECTIONS = {
    "Install",
    "The seed example, before and after",
    "Quick start (Python)",
    "Command line",
    "More: the user guide and the engine's design",
    "Speed",
    "Differences from scikit-learn and optuna_integration",
    "Set up and test on a fresh machine",
}


def _docs_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in DOCS.rglob("*.md"))


def test_readme_is_a_users_page():
    sections = {
        line[3:].strip() for line in README.splitlines() if line.startswith("## ")
    }
    assert sections == USER_SECTIONS
    # Engine internals live in the docs; the measured speed table stays.
    assert "### The training step against its matmul floor" not in README
    assert "| seed `GridSearchCV` (8 x 5 folds)" in README


@pytest.mark.parametrize(
    "figure",
    [
        "4.12 s | 26.35 s | **6.4x**",  # the speed table
        "| 640 | 1920 | 21.52 |",  # the scaling table
        "train 98.7 %, score 0.6 % (0.43",  # the 5,000-model breakdown
        "**1.40x**",  # the step against its floor
        "0.64 ms per model",
        "saved 12,900 of 20,000 model-epochs",
        "8.7 to 0.8 ms of CPU per model",
    ],
)
def test_measured_figures_are_kept(figure):
    assert figure in README + _docs_text()


def test_every_docs_page_is_reachable_from_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in DOCS.rglob("*.md"):
        assert str(page.relative_to(DOCS)) in nav, page


@pytest.mark.slow
def test_docs_build_with_warnings_as_errors(tmp_path):
    for name in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(name.split(".")[0]) is None:
            pytest.skip(f"needs the docs extra ({name})")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "reference" / "searches" / "index.html").is_file()


def test_every_script_option_has_help():
    missing = []
    for path in sorted((ROOT / "scripts").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == (
                "add_argument"
            ):
                if "help" not in {k.arg for k in node.keywords}:
                    missing.append(f"{path.name}:{node.lineno}")
    assert not missing, missing
