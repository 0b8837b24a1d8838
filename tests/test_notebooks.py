"""Every notebook runs top to bottom against a small trained pipeline of its use case, so none rots.

Notebooks are stored without outputs (reviewable diffs, no data in the repository) and run here
with the `python3` kernel, which must be this environment's Python: the one `make notebook`
gives JupyterLab.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from tests.conftest import (
    CANARIES,
    LOAN_NEEDLES,
    REFERENCE_CANARIES,
    STORE_NEEDLES,
    LoanPipeline,
    Pipeline,
    StorePipeline,
)

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@dataclass(frozen=True)
class Target:
    """The data folder, DuckDB file and MLflow store a notebook reads, and the canaries it must not show."""

    data_dir: Path
    db: Path
    tracking_uri: str
    canaries: tuple[str, ...]


def _fraud(p: Pipeline) -> Target:
    return Target(p.data_dir, p.db, p.tracking_uri, (*CANARIES.values(), *REFERENCE_CANARIES))


def _loan(p: LoanPipeline) -> Target:
    return Target(p.sim.folder.parent, p.db, p.tracking_uri, tuple(n.decode() for n in LOAN_NEEDLES))


def _store(p: StorePipeline) -> Target:
    return Target(p.folder.parent, p.db, p.tracking_uri, tuple(n.decode() for n in STORE_NEEDLES))


PIPELINES: dict[str, tuple[str, Callable[[Any], Target]]] = {
    "fraud_exploration.ipynb": ("fraud_pipeline", _fraud),
    "loan_exploration.ipynb": ("loan_pipeline", _loan),
    "store_exploration.ipynb": ("store_pipeline", _store),
}
"""Notebook -> the conftest fixture building its use case's pipeline, and what to read from it."""


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no notebook"


def test_every_notebook_has_a_pipeline() -> None:
    assert {p.name for p in NOTEBOOKS} == set(PIPELINES), "map each notebook to its use case's pipeline"


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
    path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture, target_of = PIPELINES[path.name]
    target = target_of(request.getfixturevalue(fixture))
    monkeypatch.setenv("SAMESTREAM_DATA_DIR", str(target.data_dir))
    monkeypatch.setenv("SAMESTREAM_DB", str(target.db))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", target.tracking_uri)
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError with the failing cell's traceback

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3, "the notebook drew too few figures"
    shown = json.dumps(outputs).lower()
    assert not [v for v in target.canaries if v.lower() in shown]
