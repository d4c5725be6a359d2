"""The audit log: one append-only table of what the pipeline did to CRM data, written only through one function.

``crm_audit.audit_log`` records loads, gate verdicts, publishes, quarantine releases, grants and erasures: who (the
session's login role), when, what, and counts; never a row's values. Nobody writes the table directly:

* ``crm_audit.record_event(event, subject, run_id, details)`` is ``SECURITY DEFINER``: it runs with its owner's
  rights, so the pipeline roles get ``EXECUTE`` on it and no privilege on the table (``warehouse/roles.py``);
* triggers refuse every ``UPDATE``, ``DELETE`` and ``TRUNCATE``, the owner's included. Only a superuser who drops the
  triggers can rewrite history, and that leaves its own trace in PostgreSQL's log.

The function records ``session_user`` (the role that logged in), not ``current_user`` (inside the function, the
owner), so an entry names the connection that asked for it.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import psycopg
from psycopg.types.json import Jsonb

from crm_pipeline.warehouse.ddl import run_ddl

Event = Literal["load", "gate", "publish", "release", "grant", "erasure"]
EVENTS: tuple[str, ...] = get_args(Event)
RECORD_FUNCTION = "crm_audit.record_event(text, text, text, jsonb)"

# Statements one by one: function bodies hold semicolons, so these are not a split_script script.
DDL: tuple[str, ...] = (
    "create schema if not exists crm_audit",
    "create table if not exists crm_audit.audit_log ("
    " id bigint generated always as identity primary key,"
    " recorded_at timestamptz not null default clock_timestamp(),"
    " recorded_by text not null,"
    " event text not null check (event in (" + ", ".join(f"'{e}'" for e in EVENTS) + ")),"
    " subject text not null,"
    " run_id text,"
    " details jsonb not null default '{}'::jsonb)",
    "create index if not exists audit_log_event_recorded on crm_audit.audit_log (event, recorded_at)",
    "revoke all on crm_audit.audit_log from public",
    "create or replace function crm_audit.refuse_audit_log_change() returns trigger language plpgsql as $$"
    " begin raise exception 'crm_audit.audit_log is append-only: % refused', tg_op"
    " using errcode = 'insufficient_privilege'; end $$",
    "create or replace trigger audit_log_append_only before update or delete on crm_audit.audit_log"
    " for each row execute function crm_audit.refuse_audit_log_change()",
    "create or replace trigger audit_log_no_truncate before truncate on crm_audit.audit_log"
    " for each statement execute function crm_audit.refuse_audit_log_change()",
    "create or replace function crm_audit.record_event(event text, subject text, run_id text, details jsonb)"
    " returns bigint language sql security definer set search_path = pg_catalog, pg_temp as $$"
    " insert into crm_audit.audit_log (recorded_by, event, subject, run_id, details)"
    " values (session_user, event, subject, run_id, coalesce(details, '{}'::jsonb)) returning id $$",
    f"revoke all on function {RECORD_FUNCTION} from public",
)


def ensure_audit_log(conn: psycopg.Connection) -> None:
    """Create the log and its function unless they exist (cheap before every write: one catalogue lookup)."""
    with conn.transaction():
        row = conn.execute("select to_regprocedure(%s) is not null", (RECORD_FUNCTION,)).fetchone()
    if not (row and row[0]):
        run_ddl(conn, DDL)


def record_event(
    conn: psycopg.Connection, event: Event, subject: str, *, run_id: str | None = None, details: dict[str, Any]
) -> int:
    """Append one entry, in the caller's transaction (it commits or rolls back with what it records)."""
    if event not in EVENTS:
        raise ValueError(f"audit log: unknown event {event!r}; known: {', '.join(EVENTS)}")
    row = conn.execute(
        "select crm_audit.record_event(%s, %s, %s, %s)", (event, subject, run_id, Jsonb(details))
    ).fetchone()
    return int(row[0]) if row else 0


def entries(conn: psycopg.Connection, event: Event | None = None) -> list[dict[str, Any]]:
    """The log, oldest first (optionally one kind of event): for the CLI, the health page and the tests."""
    rows = conn.execute(
        "select id, recorded_at, recorded_by, event, subject, run_id, details from crm_audit.audit_log"
        " where %(event)s::text is null or event = %(event)s order by id",
        {"event": event},
    ).fetchall()
    names = ("id", "recorded_at", "recorded_by", "event", "subject", "run_id", "details")
    return [dict(zip(names, row, strict=True)) for row in rows]
