"""The notebooks in notebooks/ run top to bottom on the bundled example, so they never rot."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
EXPECTED = {"plan-walkthrough.ipynb", "capacity-whatif.ipynb", "failure-study.ipynb"}


def test_the_notebooks_are_there() -> None:
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} >= EXPECTED


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    # committed clean: no outputs, no execution counts (small diffs, no stale pictures)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: has outputs"
    client = NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any error
    images = [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "display_data" and "image/png" in o.data
    ]
    assert images, f"{path.name} drew no figure"
