"""`make bench` must not rot: a one-repetition run at scale XS writes a complete table (the real run is by hand)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from crm_pipeline.bench.gates import StoppedBatchError, judge_all
from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.sources.simulator.sync import Fault, run_sync
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration


@pytest.mark.slow  # seven minutes of whole transforms: in make test, not in the edit-test loop
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


def test_the_bench_refuses_a_pass_whose_gate_stopped_a_batch(warehouse: WarehouseUrl) -> None:
    """A stopped batch would leave its rows out of the transform the bench then times: the number would measure
    less than the pipeline's work, so the bench stops with the stream and the gate's reason instead. An empty batch
    stopped by its volume bound (a daily stream's quiet day in P3 at XS) leaves nothing out and is let through."""
    catalogue = default_catalogue()
    with psycopg.connect(warehouse.libpq(), autocommit=True) as conn:
        good = run_sync(conn, catalogue.get("hubspot.owners"), seed=3, scale="XS")
        empty = Fault(stream="hubspot.contacts", kind="empty_batch")
        quiet = run_sync(conn, catalogue.get("hubspot.contacts"), seed=3, scale="XS", faults=(empty,))
        dropped = Fault(stream="hubspot.deals", kind="dropped_column")
        broken = run_sync(conn, catalogue.get("hubspot.deals"), seed=3, scale="XS", faults=(dropped,))
    assert judge_all(warehouse, {"hubspot.owners": good.sync_id, "hubspot.contacts": quiet.sync_id}) > 0
    with pytest.raises(StoppedBatchError, match=r"hubspot\.deals \([1-9][0-9,]* rows\): .*contract_columns_present"):
        judge_all(warehouse, {"hubspot.owners": good.sync_id, "hubspot.deals": broken.sync_id})
