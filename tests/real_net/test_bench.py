"""``raftkv bench``: raftkv and a local etcd 3.4 measured by the same client, the figures
printed and, with --out, written as JSON and drawn as a PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .api.support import require_binary

pytestmark = pytest.mark.timeout(180)


def test_bench_measures_raftkv_beside_etcd_and_writes_its_figures(tmp_path: Path) -> None:
    require_binary("etcd")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "real_net", "bench", "--nodes", "1", "--clients", "4", "--seconds", "1",
         "--workloads", "put,get", "--key-space", "50", "--procs", "1", "--etcd", "--out", str(out),
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout.split("errors\n", 1)[1]
    rows = [line.split() for line in table.splitlines() if line and not line.startswith(("-", "wrote"))]
    assert [(r[0], r[1]) for r in rows] == [("raftkv", "put"), ("raftkv", "get"), ("etcd", "put"), ("etcd", "get")]
    data = json.loads((out / "bench.json").read_text())
    assert data["settings"]["nodes"] == 1 and data["settings"]["fsync"] is True
    for row, printed in zip(data["results"], rows):
        assert (row["system"], row["workload"]) == (printed[0], printed[1])
        assert row["requests"] > 0 and row["errors"] == 0
        assert row["requests_per_second"] == pytest.approx(row["requests"] / row["seconds"], rel=0.01)
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert int(printed[2]) == round(row["requests_per_second"])
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
