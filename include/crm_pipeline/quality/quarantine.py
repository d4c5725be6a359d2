"""Quarantine: raw rows a gate rejected, by raw id, with the rule and the reason; staging reads around them.

The rows stay in the raw table exactly as the connector wrote them (nothing is lost, and releasing them is one
delete); ``crm_audit.quarantine`` lists their ``_airbyte_raw_id`` and staging anti-joins it (the dbt macro
``gated_source``). Two ways in: the rows a row-level rule failed, when the batch's failing share stays within the
stream's ``max_quarantine_share``; or every row of a batch the gate stopped, so that a later run cannot carry the
stopped batch into the marts once another batch of the stream passes. Everything is set-based SQL in the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import psycopg

from crm_pipeline.quality.rules import Rule, quote_ident
from crm_pipeline.warehouse import audit_log
from crm_pipeline.warehouse.ddl import run_ddl, split_script

DDL = """
create schema if not exists crm_audit;
create table if not exists crm_audit.quarantine (
    raw_id varchar not null,  -- _airbyte_raw_id (the destination writes it as varchar)
    stream text not null,
    sync_id bigint not null,
    rule text not null,
    column_name text,
    reason text not null,
    run_id text,
    quarantined_at timestamptz not null default now(),
    primary key (raw_id, rule)
);
create index if not exists quarantine_batch on crm_audit.quarantine (stream, sync_id)
"""
SAMPLE_KEYS = 5
CLEAR_FUNCTION = "crm_audit.clear_quarantine_of_emptied_stream(text)"
# A replay empties a stream's raw table and resyncs it; its quarantine rows point at rows that are gone. The
# loader runs the reset but may not delete quarantine rows itself (it could let rows past the gate): this function
# does, as the owner, only for a stream whose raw table ``raw_<source>.<stream>`` is empty, and records it.
CLEAR_FUNCTION_DDL = f"""create or replace function {CLEAR_FUNCTION} returns bigint
    language plpgsql security definer set search_path = pg_catalog, pg_temp
as $fn$
declare
    stream_key alias for $1;
    source_schema text := 'raw_' || split_part(stream_key, '.', 1);
    source_table text := substr(stream_key, length(split_part(stream_key, '.', 1)) + 2);
    target oid := to_regclass(format('%I.%I', source_schema, source_table));
    is_empty boolean;
    removed bigint;
begin
    if target is not null then
        -- Read as the owner: only a plain table without row security runs none of its owner's code on a select.
        if exists (select from pg_class c where c.oid = target and (c.relkind <> 'r' or c.relrowsecurity)) then
            raise exception '%.% is not a plain table: the quarantine of % stays', source_schema, source_table,
                stream_key using errcode = 'insufficient_privilege';
        end if;
        execute format('select not exists (select from %I.%I)', source_schema, source_table) into is_empty;
        if not is_empty then
            raise exception 'the quarantine of % is cleared only once %.% is empty (a replay''s reset)',
                stream_key, source_schema, source_table using errcode = 'insufficient_privilege';
        end if;
    end if;
    delete from crm_audit.quarantine q where q.stream = stream_key;
    get diagnostics removed = row_count;
    perform crm_audit.record_event('release', stream_key, null,
        jsonb_build_object('quarantine_rows_removed', removed, 'why', 'its raw table was emptied for a resync'));
    return removed;
end
$fn$"""  # noqa: S608 (constants only)


@dataclass(frozen=True)
class Quarantined:
    """What one rule sent to quarantine from one batch."""

    rule: str
    rows: int
    sample_keys: tuple[str, ...]  # primary keys of a few of them, for alerts (keys, never values)


def ensure_quarantine(conn: psycopg.Connection) -> None:
    run_ddl(conn, split_script(DDL))


def quarantine_failing_rows(
    conn: psycopg.Connection,
    *,
    stream: str,
    sync_id: int,
    batch_query: str,
    primary_key: Sequence[str],
    rules: Sequence[Rule],
    run_id: str,
) -> list[Quarantined]:
    """Quarantine the rows each row-level rule fails; return per rule how many, with a few of their keys."""
    results = []
    batch = f"({_embed(batch_query)})"
    key = " || '|' || ".join(f"coalesce(batch.{quote_ident(c)}::text, '<null>')" for c in primary_key)
    for rule in rules:
        if rule.failing_rows is None:
            raise ValueError(f"rule {rule.name} judges the batch, not rows: it cannot quarantine")
        failing = _embed(rule.failing_rows).replace("{batch}", batch)
        with conn.transaction():
            inserted = conn.execute(
                "insert into crm_audit.quarantine (raw_id, stream, sync_id, rule, column_name, reason, run_id)"  # noqa: S608
                f" select failing._airbyte_raw_id, %s, %s, %s, %s, %s, %s from ({failing}) as failing"
                " on conflict do nothing",
                (stream, sync_id, rule.name, rule.column, rule.reason, run_id),
            ).rowcount
            sample = conn.execute(
                f"select {key} from {batch} as batch"  # noqa: S608  (catalogue identifiers, quoted)
                " join crm_audit.quarantine as q on q.raw_id = batch._airbyte_raw_id"
                " where q.rule = %s and q.sync_id = %s order by 1 limit %s",
                (rule.name, sync_id, SAMPLE_KEYS),
            ).fetchall()
        results.append(Quarantined(rule.name, inserted, tuple(str(row[0]) for row in sample)))
    return results


def quarantine_batch(
    conn: psycopg.Connection, *, stream: str, sync_id: int, batch_query: str, rules: str, reason: str, run_id: str
) -> int:
    """Quarantine every row of a stopped batch under the rule(s) that stopped it."""
    with conn.transaction():
        return conn.execute(
            "insert into crm_audit.quarantine (raw_id, stream, sync_id, rule, column_name, reason, run_id)"  # noqa: S608
            f" select batch._airbyte_raw_id, %s, %s, %s, null, %s, %s from ({_embed(batch_query)}) as batch"
            " on conflict do nothing",
            (stream, sync_id, rules, reason, run_id),
        ).rowcount


def quarantined_rows(conn: psycopg.Connection, stream: str, sync_id: int) -> int:
    """How many distinct rows of one batch are in quarantine (a row failing two rules counts once)."""
    row = conn.execute(
        "select count(distinct raw_id) from crm_audit.quarantine where stream = %s and sync_id = %s",
        (stream, sync_id),
    ).fetchone()
    return int(row[0]) if row else 0


RELEASES_DDL = """
create schema if not exists crm_audit;
create table if not exists crm_audit.releases (
    stream text not null,
    sync_id bigint not null,
    rows_released bigint not null,
    released_at timestamptz not null default clock_timestamp()
)
"""


def release(conn: psycopg.Connection, stream: str, sync_id: int, *, wait: timedelta = timedelta(minutes=10)) -> int:
    """Let a batch's quarantined rows through on the next transform (after a person checked them). The release is
    recorded (``crm_audit.releases``): it changes what staging reads, so the next transform rebuilds the stream.

    Rows coming back change what a running transform's audit would read: the release waits up to ``wait`` for a
    transform run that holds raw (``TransformReading`` after that, naming the run)."""
    from crm_pipeline.warehouse.transform_lease import replacing_write

    ensure_quarantine(conn)
    run_ddl(conn, split_script(RELEASES_DDL))
    audit_log.ensure_audit_log(conn)
    holder = f"quarantine release of {stream} sync {sync_id}"
    with replacing_write(conn, holder, [stream], expires_in=timedelta(minutes=10), wait=wait), conn.transaction():
        released = conn.execute(
            "delete from crm_audit.quarantine where stream = %s and sync_id = %s", (stream, sync_id)
        ).rowcount
        conn.execute(
            "insert into crm_audit.releases (stream, sync_id, rows_released) values (%s, %s, %s)",
            (stream, sync_id, released),
        )
        audit_log.record_event(
            conn, "release", stream, details={"sync_id": sync_id, "rows_released": released, "holder": holder}
        )
    return released


def _embed(query: str) -> str:
    """SQL text placed in a query that also takes parameters: a literal % must be doubled."""
    return query.replace("%", "%%")
