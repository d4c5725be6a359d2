"""P2: the simulator's raw load, rows/s, against the destination's own write of exactly the same rows, fed by a
bare COPY.

Each repetition uses a fresh database. Per stream: the simulator's first (historical) sync is timed end to end
(generation, encoding, COPY, the sync-mode write); then the rows it wrote are exported with ``COPY TO``, the table is
created again, and the same bytes are written the way the destination writes them, timed: a bare ``COPY FROM
STDIN`` for an append stream; for a dedup stream the bare COPY into its temporary table, the upsert and the drop
(``raw_tables.write_batch``). Both write the same table with the same indexes, so the ratio is what generating and
encoding the rows costs, not what the destination's statements cost.
"""

from __future__ import annotations

import io
import time
import uuid

import psycopg
from psycopg import sql

from crm_pipeline.bench.measure import Measurement
from crm_pipeline.catalogue import StreamSpec, default_catalogue
from crm_pipeline.sources.raw_tables import CopyText, create_raw_table, table_ident, write_batch
from crm_pipeline.sources.simulator.sync import run_sync
from crm_pipeline.warehouse.locate import drop_database, ensure_database
from crm_pipeline.warehouse.url import WarehouseUrl

# The largest streams at every scale: they are where load time goes.
STREAMS = ("hubspot.contacts", "hubspot.engagements", "salesforce.Task")


def _bare_copy(conn: psycopg.Connection, spec: StreamSpec) -> float:
    table = table_ident(spec)
    data = io.BytesIO()
    with conn.cursor().copy(sql.SQL("copy {} to stdout").format(table)) as copy:
        for chunk in copy:
            data.write(chunk)
    # A new table, as at a first sync: into a truncated one, the same upsert took 606 µs a row at scale M against
    # 9 µs (docs/performance.md).
    conn.execute(sql.SQL("drop table {}").format(table))
    create_raw_table(conn, spec)
    conn.commit()
    payload = data.getvalue()
    rows = payload.count(b"\n")
    started = time.perf_counter()
    if spec.sync_mode == "incremental_append":
        with conn.cursor().copy(sql.SQL("copy {} from stdin").format(table)) as copy:
            for offset in range(0, len(payload), 1 << 20):
                copy.write(payload[offset : offset + (1 << 20)])
    else:
        write_batch(conn, spec, [CopyText(rows, payload.decode())])
    conn.commit()
    return time.perf_counter() - started


def measure_load(server: WarehouseUrl, scale: str, repeat: int, seed: int = 7) -> Measurement:
    result = Measurement(
        "P2",
        f"raw load, {', '.join(STREAMS)} (first sync)",
        "rows/s",
        ">= 0.7x the destination's write, bare COPY",
        0.7,
        higher_is_better=True,
    )
    for _ in range(repeat):
        name = f"crm_bench_{uuid.uuid4().hex[:8]}"
        ensure_database(server, name)
        try:
            rows = simulated = bare = 0.0
            with psycopg.connect(server.with_database(name).libpq()) as conn:
                for key in STREAMS:
                    spec = default_catalogue().get(key)
                    started = time.perf_counter()
                    synced = run_sync(conn, spec, seed=seed, scale=scale)  # type: ignore[arg-type]
                    conn.commit()
                    simulated += time.perf_counter() - started
                    bare += _bare_copy(conn, spec)
                    rows += synced.rows
            result.samples.append((rows / simulated, rows / bare))
            result.note = (
                f"per row: simulator {1e6 * simulated / rows:.0f} µs, the destination's write from a bare COPY"
                f" {1e6 * bare / rows:.0f} µs"
                f" ({rows:,.0f} rows)"
            )
        finally:
            drop_database(server, name)
    return result
