"""Write-audit-publish for the marts: dbt writes ``marts_build``, the audit reads it, publishing swaps it in.

Analysts read ``marts``. dbt never writes there: it builds into ``marts_build``; the mart audit checks that schema;
``publish_marts`` then exchanges the two schemas' names in one transaction. Readers see the old marts or the new,
never a mix:

* the transaction first takes ACCESS EXCLUSIVE locks on every published table, so it waits for readers that are
  using them (a reader's transaction holds its locks to the end, so a multi-statement read stays on one version);
* a reader that asks for a table while the swap is in progress waits on that lock and, when it is granted,
  PostgreSQL resolves the name again and finds the new table;
* the rename is catalogue-only: no data moves, so the exclusive window lasts milliseconds.

Only a schema's owner may rename it, and the owner is the deploy step's role, not the transformer that publishes.
``crm_audit.swap_marts()`` is ``SECURITY DEFINER``: the transformer may execute it, and it locks the live tables,
does the three renames, hands the new build schema's tables to the transformer and the published ones to the owner
(``crm_audit.settle_marts()``: the transformer only reads what is published) and moves the analyst's access
(``crm_audit.grant_published()``, ``warehouse/roles.py``), nothing else.

The previous version becomes the next ``marts_build``. dbt's incremental marts there are one publish behind, which
their load-time watermarks handle: they process everything loaded since their own last row. A failed audit never
reaches this module, so the published marts stay exactly as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from crm_pipeline.warehouse.ddl import run_ddl, split_script

PUBLISHED_SCHEMA = "marts"
BUILD_SCHEMA = "marts_build"
_SWAP_SCHEMA = "marts_retiring"
PUBLISH_LOCK_KEY = 7_302_114_771  # pg_advisory_xact_lock: one publish at a time
LOCK_TIMEOUT = "60s"  # a reader holding the old marts longer makes the publish fail and retry, never hang

DDL = """
create schema if not exists crm_audit;
create table if not exists crm_audit.publishes (
    id bigserial primary key,
    published_at timestamptz not null default now(),
    run_id text,
    tables text[] not null,
    row_counts jsonb not null
);
alter table crm_audit.publishes add column if not exists judged_before timestamptz
"""
SWAP_FUNCTION = "crm_audit.swap_marts()"
GRANT_FUNCTION = "crm_audit.grant_published()"
SETTLE_FUNCTION = "crm_audit.settle_marts()"
ANALYST = "crm_analyst"  # warehouse/roles.py's ANALYST (imported from here: roles.py imports this module)
BUILDER = "crm_transformer"  # warehouse/roles.py's TRANSFORMER
# The head of each function here: run as the owner, on a fixed search path (nothing a caller sets is searched).
_DEFINER = """create or replace function {name} returns void
    language plpgsql security definer set search_path = pg_catalog, pg_temp
as $fn$
"""
# Statements one by one: function bodies hold semicolons.
FUNCTIONS_DDL: tuple[str, ...] = (
    _DEFINER.format(name=GRANT_FUNCTION)  # noqa: S608 (constants only)
    + f"""\
    begin
        if not exists (select from pg_roles where rolname = '{ANALYST}') then
            return;
        end if;
        if to_regnamespace('{PUBLISHED_SCHEMA}') is not null then
            grant usage on schema {PUBLISHED_SCHEMA} to {ANALYST};
            grant select on all tables in schema {PUBLISHED_SCHEMA} to {ANALYST};
        end if;
        if to_regnamespace('{BUILD_SCHEMA}') is not null then
            revoke all on schema {BUILD_SCHEMA} from {ANALYST};
            revoke all on all tables in schema {BUILD_SCHEMA} from {ANALYST};
        end if;
    end
    $fn$""",  # noqa: S608 (constants only)
    # The builder (dbt, as the transformer) owns and writes the build schema only. What is published belongs to
    # the owner and is read-only to the builder, so it can change no published table, nor add one, between
    # publishes (issue 28: it made a view over staging's emails in the live marts and granted it to the analyst).
    _DEFINER.format(name=SETTLE_FUNCTION)  # noqa: S608 (constants only)
    + f"""\
    declare
        rel record;
    begin
        if to_regrole('{BUILDER}') is null or not pg_has_role(current_user, '{BUILDER}', 'MEMBER') then
            return;
        end if;
        if to_regnamespace('{BUILD_SCHEMA}') is not null then
            grant usage, create on schema {BUILD_SCHEMA} to {BUILDER};
        end if;
        -- The build schema's relations to the builder, the published ones (the builder's until now) to the owner.
        for rel in select n.nspname, c.relname,
                    case c.relkind when 'v' then 'view' when 'm' then 'materialized view' else 'table' end as kind,
                    case n.nspname when '{BUILD_SCHEMA}' then '{BUILDER}' else current_user::text end as owner
                from pg_class c join pg_namespace n on n.oid = c.relnamespace
                where c.relkind in ('r', 'p', 'v', 'm')
                  and (n.nspname = '{BUILD_SCHEMA}' and c.relowner <> to_regrole('{BUILDER}')
                       or n.nspname = '{PUBLISHED_SCHEMA}' and c.relowner = to_regrole('{BUILDER}')) loop
            execute format('alter %s %I.%I owner to %I', rel.kind, rel.nspname, rel.relname, rel.owner);
        end loop;
        if to_regnamespace('{PUBLISHED_SCHEMA}') is not null then
            revoke create on schema {PUBLISHED_SCHEMA} from {BUILDER};
            grant usage on schema {PUBLISHED_SCHEMA} to {BUILDER};
            revoke all on all tables in schema {PUBLISHED_SCHEMA} from {BUILDER};
            grant select on all tables in schema {PUBLISHED_SCHEMA} to {BUILDER};
        end if;
    end
    $fn$""",  # noqa: S608 (constants only)
    _DEFINER.format(name=SWAP_FUNCTION)  # noqa: S608 (constants only)
    + f"""\
    declare
        live text;
    begin
        -- Readers of the live tables finish first (locked in name order, as readers take them); then the renames
        -- take milliseconds.
        select string_agg(format('%I.%I', n.nspname, c.relname), ', ' order by c.relname) into live
            from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = '{PUBLISHED_SCHEMA}' and c.relkind in ('r', 'p');
        if live is not null then
            execute 'lock table ' || live || ' in access exclusive mode';
        end if;
        if to_regnamespace('{PUBLISHED_SCHEMA}') is not null then
            alter schema {PUBLISHED_SCHEMA} rename to {_SWAP_SCHEMA};
        end if;
        alter schema {BUILD_SCHEMA} rename to {PUBLISHED_SCHEMA};
        if to_regnamespace('{_SWAP_SCHEMA}') is not null then
            alter schema {_SWAP_SCHEMA} rename to {BUILD_SCHEMA};
        end if;
        perform {SETTLE_FUNCTION};
        perform {GRANT_FUNCTION};
    end
    $fn$""",  # noqa: S608 (constants only)
    f"revoke all on function {GRANT_FUNCTION}, {SWAP_FUNCTION}, {SETTLE_FUNCTION} from public",
)


def ensure_publish(conn: psycopg.Connection) -> None:
    """The publishes table and the two functions (the deploy step's; a pipeline role checks the table is there)."""
    run_ddl(conn, [*split_script(DDL), *FUNCTIONS_DDL])


@dataclass(frozen=True)
class Published:
    tables: tuple[str, ...]
    row_counts: dict[str, int]


def schema_tables(conn: psycopg.Connection, schema: str) -> list[str]:
    rows = conn.execute(
        "select tablename from pg_tables where schemaname = %s order by tablename", (schema,)
    ).fetchall()
    return [row[0] for row in rows]


def _count(conn: psycopg.Connection, schema: str, table: str) -> int:
    row = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))).fetchone()
    return int(row[0]) if row else 0


def published_count(conn: psycopg.Connection, table: str) -> int | None:
    """Rows of a published mart, or None when it has never been published."""
    if table not in schema_tables(conn, PUBLISHED_SCHEMA):
        return None
    return _count(conn, PUBLISHED_SCHEMA, table)


def _cutoff_of(conn: psycopg.Connection, run_id: str | None) -> Any:
    """The cutoff of the transform run that built what is published (``raw_gate.set_transform_cutoff``), so the
    next run knows what changed since (``orchestration/selection.py``); None for a build outside such a run."""
    if run_id is None or conn.execute("select to_regclass('crm_audit.transform_cutoff')").fetchone() == (None,):
        return None
    row = conn.execute("select judged_before from crm_audit.transform_cutoff where run_id = %s", (run_id,)).fetchone()
    return row[0] if row else None


def publish_marts(conn: psycopg.Connection, run_id: str | None = None) -> Published:
    """Swap the audited ``marts_build`` in as ``marts`` atomically; record it in ``crm_audit.publishes`` and in the
    audit log; move the analyst role's access to the new marts in the same transaction (``swap_marts``)."""
    from crm_pipeline.warehouse import audit_log

    ensure_publish(conn)
    audit_log.ensure_audit_log(conn)
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (PUBLISH_LOCK_KEY,))
        conn.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(LOCK_TIMEOUT)))
        tables = schema_tables(conn, BUILD_SCHEMA)
        if not tables:
            raise RuntimeError(f"nothing to publish: schema {BUILD_SCHEMA} has no tables (did dbt build the marts?)")
        # Counted before any lock is taken: readers are only ever blocked for the renames.
        counts = {table: _count(conn, BUILD_SCHEMA, table) for table in tables}
        conn.execute(f"select {SWAP_FUNCTION}")  # locks the live tables, swaps, settles ownership and grants
        conn.execute(
            "insert into crm_audit.publishes (run_id, tables, row_counts, judged_before) values (%s, %s, %s, %s)",
            (run_id, tables, Jsonb(counts), _cutoff_of(conn, run_id)),
        )
        audit_log.record_event(conn, "publish", PUBLISHED_SCHEMA, run_id=run_id, details={"row_counts": counts})
    return Published(tuple(tables), counts)
