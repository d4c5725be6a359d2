"""One raw gate in a process of its own; prints the process's peak resident memory for ``bench/gates.py``.

``VmHWM`` from ``/proc/self/status`` belongs to this program's address space alone: ``ru_maxrss`` would also count
the parent's memory that the child had before ``exec``."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.quality.raw_gate import judge_batch
from crm_pipeline.warehouse.url import parse_warehouse_url


def main(stream: str, sync_id: str) -> int:
    url = parse_warehouse_url(os.environ["CRM_BENCH_WAREHOUSE"], "CRM_BENCH_WAREHOUSE")
    with psycopg.connect(url.libpq()) as conn:
        judge_batch(url, conn, default_catalogue().get(stream), int(sync_id), run_id="bench", now=datetime.now(UTC))
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            print(f"peak_kib={line.split()[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
