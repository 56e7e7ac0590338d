"""Executing a notebook in CI: a fresh kernel, every cell in order, a failing cell fails the test.

A notebook takes its parameters from environment variables read in its first code cell (tagged
`parameters`), e.g. `RESULTS = Path(os.environ.get("SERVESIM_RESULTS", "../results/quickstart"))`,
so that the committed notebook runs as it is, on a user's results or on a test's.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def execute_notebook(path: Path, parameters: Mapping[str, str | os.PathLike[str]], timeout_s: int = 300
                     ) -> nbformat.NotebookNode:
    """Run every cell of `path` in its own kernel, from the notebook's folder, with `parameters`
    added to the kernel's environment; return the executed notebook (the file is not changed).

    A cell that raises fails with nbclient's `CellExecutionError`, which shows the cell and its traceback.
    """
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout_s, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    environment = {**os.environ, **{key: str(value) for key, value in parameters.items()}}
    environment.pop("MPLBACKEND", None)  # the kernel's own (inline) backend turns figures into outputs
    client.execute(env=environment)
    return notebook


def outputs(notebook: nbformat.NotebookNode, kind: str) -> list[str]:
    """Every output of one kind across the cells: `text/plain`, `text/html`, `image/png` or `stream`."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if kind == "stream" and output["output_type"] == "stream":
                found.append(output["text"])
            elif kind in output.get("data", {}):
                found.append(output["data"][kind])
    return found
