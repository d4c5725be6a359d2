"""`make bench` must not rot: a one-repetition run at scale XS writes a complete table (the real run is by hand)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_bench_writes_every_measurement_with_its_baseline(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "crm_pipeline.cli",
            "bench",
            "--scale",
            "XS",
            "--repeat",
            "1",
            "--end-to-end-scale",
            "XS",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = out.read_text()
    assert "- machine: " in table and "PostgreSQL 16" in table
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| P")}
    assert set(rows) == {"P1", "P2", "P3", "P4", "P5", "P5m", "P6", "P6m", "P5m XS"}
    absolute = {"P6", "P6m"}  # absolute targets: no baseline, no ratio
    assert all("x (" in row for key, row in rows.items() if key not in absolute)
    assert " rows/s |" in rows["P2"]
    assert " min | — | — | <= 15 min |" in rows["P6"] and " GiB | — | — | <= 4 GiB |" in rows["P6m"]
    assert "whole pass at scale XS" in rows["P6"] and "- P6: load " in table
