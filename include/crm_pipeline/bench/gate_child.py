"""One raw gate in a process of its own, so that ``bench/gates.py`` can read its peak memory from the kernel."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

import psycopg

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.quality.raw_gate import judge_batch
from crm_pipeline.warehouse.url import parse_warehouse_url


def main(stream: str, sync_id: str) -> int:
    url = parse_warehouse_url(os.environ["CRM_BENCH_WAREHOUSE"], "CRM_BENCH_WAREHOUSE")
    with psycopg.connect(url.libpq()) as conn:
        judge_batch(url, conn, default_catalogue().get(stream), int(sync_id), run_id="bench", now=datetime.now(UTC))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
