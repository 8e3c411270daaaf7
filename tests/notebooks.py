"""Run the project's notebooks (nbclient) and collect their text output, for the tests that
keep them from rotting: tests/pipelines/test_segmentation_profiling.py (a profiling run's
outputs and MLflow run) and tests/serving/test_triton_server.py (a live Triton server)."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient

from tests.conftest import PROJECT_ROOT

NOTEBOOKS = PROJECT_ROOT / "notebooks"


def run_notebook(name: str, timeout_s: int = 300) -> str:
    """Execute ``notebooks/<name>`` top to bottom (raises on any failing cell); its outputs.

    Environment variables the notebooks read (``MORPHOFLOW_PROJECT``, ``MORPHOFLOW_TRITON_URL``)
    come from this process's environment.
    """
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook,
        timeout=timeout_s,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    ).execute()
    parts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.extend(str(v) for v in output.get("data", {}).values())
    return "\n".join(parts)
