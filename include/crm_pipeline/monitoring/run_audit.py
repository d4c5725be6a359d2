"""The run audit: one row per stream and extract run, written by ``admit`` once every gate of the run has finished.

It answers the questions a person on call asks first: did the stream load, how much, did its gate let it through,
how long did it take from sync start to admission. Freshness checks and the health page read it; it records
counts and times, never row values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg

from crm_pipeline.quality import raw_gate
from crm_pipeline.warehouse.ddl import run_ddl, split_script

DDL = """
create schema if not exists crm_audit;
create table if not exists crm_audit.stream_runs (
    dag_id text not null,
    run_id text not null,
    stream text not null,
    sync_id bigint not null,
    source text not null,
    rows_loaded bigint,
    verdict text not null check (verdict in ('passed', 'quarantined', 'stopped', 'unjudged')),
    quarantined_rows bigint,
    sync_started_at timestamptz,
    admitted_at timestamptz not null default now(),
    duration_seconds double precision,
    primary key (run_id, stream, sync_id)
);
create index if not exists stream_runs_stream_admitted on crm_audit.stream_runs (stream, admitted_at)
"""


def ensure_run_audit(conn: psycopg.Connection) -> None:
    run_ddl(conn, split_script(raw_gate.DDL + ";\n" + DDL))  # the verdicts it joins, and its own table


def record_stream_runs(
    conn: psycopg.Connection, *, dag_id: str, run_id: str, batches: Mapping[str, Mapping[str, Any]]
) -> int:
    """Record every batch of one extract run with its verdict (``unjudged`` when its gate never recorded one).
    Idempotent: a retried or cleared ``admit`` rewrites the same rows."""
    ensure_run_audit(conn)
    with conn.transaction():
        for stream, batch in batches.items():
            started = batch.get("started_at")
            conn.execute(
                "insert into crm_audit.stream_runs (dag_id, run_id, stream, sync_id, source, rows_loaded, verdict,"
                " quarantined_rows, sync_started_at, duration_seconds)"
                " select %(dag_id)s, %(run_id)s, %(stream)s, %(sync_id)s, %(source)s,"
                "        coalesce(v.batch_rows, %(rows)s), coalesce(v.verdict, 'unjudged'), v.quarantined_rows,"
                "        %(started)s, extract(epoch from now() - %(started)s)"
                " from (select 1) as one left join crm_audit.batch_verdicts as v"
                "   on v.stream = %(stream)s and v.sync_id = %(sync_id)s"
                " on conflict (run_id, stream, sync_id) do update set rows_loaded = excluded.rows_loaded,"
                " verdict = excluded.verdict, quarantined_rows = excluded.quarantined_rows,"
                " admitted_at = excluded.admitted_at, duration_seconds = excluded.duration_seconds",
                {
                    "dag_id": dag_id,
                    "run_id": run_id,
                    "stream": stream,
                    "sync_id": int(batch["sync_id"]),
                    "source": str(batch.get("source", "simulator")),
                    "rows": batch.get("rows"),
                    "started": datetime.fromisoformat(started) if isinstance(started, str) else started,
                },
            )
    return len(batches)


def record_found_batches(
    conn: psycopg.Connection, *, dag_id: str, run_id: str, found: Sequence[tuple[str, int, str]]
) -> int:
    """Record the batches the run's gates found in raw without a verdict and judged ((stream, sync id, verdict):
    jobs Airflow did not start, jobs that failed after rows landed), with source ``found``: a stream that Airbyte's
    own schedule loads is then as fresh as its admissions. Idempotent, like ``record_stream_runs``."""
    ensure_run_audit(conn)
    with conn.transaction():
        for stream, sync_id, _ in found:
            conn.execute(
                "insert into crm_audit.stream_runs (dag_id, run_id, stream, sync_id, source, rows_loaded, verdict,"
                " quarantined_rows)"
                " select %(dag_id)s, %(run_id)s, v.stream, v.sync_id, 'found', v.batch_rows, v.verdict,"
                "        v.quarantined_rows"
                " from crm_audit.batch_verdicts as v where v.stream = %(stream)s and v.sync_id = %(sync_id)s"
                " on conflict (run_id, stream, sync_id) do nothing",
                {"dag_id": dag_id, "run_id": run_id, "stream": stream, "sync_id": sync_id},
            )
    return len(found)
