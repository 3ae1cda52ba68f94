"""The analyst notebooks execute against a demo warehouse."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_three_notebooks():
    assert [n.name[:2] for n in NOTEBOOKS] == ["01", "02", "03"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, demo_run, monkeypatch):
    monkeypatch.setenv("PATCHLEDGER_WAREHOUSE", str(demo_run[1]))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    # Every notebook shows at least one table.
    assert any("text/html" in o.get("data", {}) for o in outputs)
    assert os.environ["PATCHLEDGER_WAREHOUSE"] == str(demo_run[1])
