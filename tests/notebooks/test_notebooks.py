"""The walkthrough notebooks (notebooks/*.ipynb) are part of the test suite (issue 8).

Each notebook is executed from scratch in a fresh kernel with nbclient, as a
reader running it top to bottom would: a cell that raises fails the test, and
so does a notebook that takes longer than its budget. The kernel is this
interpreter (a kernelspec written to a temporary JUPYTER_PATH), so the
notebooks run against the code under test whatever kernels the machine has.

The committed copies must carry their outputs (they are read on GitHub and
in JupyterLab without being run), and none of those outputs may be an error.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "raftkv-test-python"
BUDGET_SECONDS = 120.0  # per notebook, on 2 cores; they aim for well under a minute


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """JUPYTER_PATH with a kernelspec that runs ipykernel on this very interpreter."""
    jupyter_path = tmp_path_factory.mktemp("jupyter")
    spec = jupyter_path / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "raftkv tests",
        "language": "python",
    }))
    return {"JUPYTER_PATH": str(jupyter_path), "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}


def test_there_are_five_walkthroughs() -> None:
    assert [p.stem for p in NOTEBOOKS] == [
        "01-leader-election",
        "02-log-replication",
        "03-faults-and-linearizability",
        "04-raft-paper-figure-16",
        "05-etcd-recipes",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_carries_its_outputs_and_no_error(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert code, "a walkthrough runs code"
    unrun = [c.source.splitlines()[0] for c in code if c.execution_count is None]
    assert not unrun, f"cells committed without being executed: {unrun}"
    errors = [o.get("ename") for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, f"committed with error outputs: {errors}"
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), "a walkthrough shows figures"


@pytest.mark.timeout(BUDGET_SECONDS + 60)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_fresh_without_error(path: Path, kernel_env: dict[str, str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in kernel_env.items():
        monkeypatch.setenv(name, value)
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=BUDGET_SECONDS, record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.monotonic()
    client.execute()  # raises CellExecutionError naming the cell if any cell raises
    elapsed = time.monotonic() - started
    assert elapsed < BUDGET_SECONDS, f"{path.name} took {elapsed:.0f} s (budget {BUDGET_SECONDS:.0f} s)"
