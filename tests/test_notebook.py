"""examples/quickstart.ipynb: written for Colab, and executed here from top to
bottom (nbclient) so that it keeps working."""

import json
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def _cells():
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]


def test_first_code_cell_installs_next_to_colabs_torch():
    first = "".join(next(c for c in _cells() if c["cell_type"] == "code")["source"])
    assert 'find_spec("torchhpo") is None' in first  # installs only where missing
    assert "git+https://github.com/OWNER/torchhpo" in first
    assert "placeholder" in first
    # It says what it keeps and what it replaces.
    assert "Colab's CUDA build is kept" in first
    assert "scikit-learn: replaced by 1.9" in first


def test_it_covers_the_seed_grid_a_csv_and_to_torch():
    text = "".join("".join(c["source"]) for c in _cells())
    for needle in ("GridSearchCV(", "pd.read_csv(", ".to_torch(", "predict("):
        assert needle in text


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_notebook_runs(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = [
        o.get("text", "") for c in notebook.cells if c.cell_type == "code"
        for o in c.get("outputs", [])
    ]  # fmt: skip
    assert any("to_torch() agrees with predict_proba" in text for text in outputs)
