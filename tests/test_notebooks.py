"""Every notebook runs top to bottom against a small trained pipeline, so none of them rots.

Notebooks are stored without outputs (reviewable diffs, no data in the repository) and run here
with the `python3` kernel, which must be this environment's Python: the one `make notebook`
gives JupyterLab.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from tests.conftest import CANARIES, REFERENCE_CANARIES, Pipeline

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"


def test_python3_kernel_is_this_environment() -> None:
    """jupyter_client starts the `python3` kernel with the Python that runs it: .venv's."""
    command = KernelManager(kernel_name="python3").format_kernel_cmd()
    assert command[0] == sys.executable
    assert command[1:3] == ["-m", "ipykernel_launcher"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_against_the_pipeline(
    path: Path, fraud_pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAMESTREAM_DB", str(fraud_pipeline.db))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", fraud_pipeline.tracking_uri)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError with the failing cell's traceback

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3, "the notebook drew too few figures"
    shown = json.dumps(outputs).lower()
    assert not [v for v in (*CANARIES.values(), *REFERENCE_CANARIES) if v.lower() in shown]
