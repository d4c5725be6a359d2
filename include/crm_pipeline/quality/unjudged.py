"""Batches in a raw table that no gate has judged: whoever started the job, however it ended.

The destination stamps every row with its job's id (``_airbyte_meta.sync_id``), also for jobs the pipeline never
started (Airbyte's own schedule, a "Sync now" click) and for jobs that failed or were cancelled after some rows
landed (each COPY flush commits; a dedup stream's upsert runs at close whether or not the job failed:
docs/raw-contract.md). Staging reads judged batches only, so each extract run's gates look for such batches and
judge them; until then their rows stay out of the marts.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from crm_pipeline.catalogue import StreamSpec
from crm_pipeline.quality.raw_gate import DDL
from crm_pipeline.warehouse.ddl import run_ddl, split_script, table_exists


def unjudged_sync_ids(conn: psycopg.Connection, spec: StreamSpec) -> list[int]:
    """The sync ids of ``spec``'s raw table with no verdict, oldest first. One pass over the table: no index
    covers ``_airbyte_meta`` (the destination creates only its own), and a batch may hide anywhere in it."""
    run_ddl(conn, split_script(DDL))
    if not table_exists(conn, spec.raw_schema, spec.stream):
        return []
    rows = conn.execute(
        sql.SQL(
            "select distinct (_airbyte_meta ->> 'sync_id')::bigint as sync_id from {} as raw_rows"
            " where not exists (select from crm_audit.batch_verdicts as judged where judged.stream = %s"
            " and judged.sync_id = (raw_rows._airbyte_meta ->> 'sync_id')::bigint)"
            " order by sync_id"
        ).format(sql.Identifier(spec.raw_schema, spec.stream)),
        (spec.key,),
    ).fetchall()
    return [int(sync_id) for (sync_id,) in rows if sync_id is not None]
