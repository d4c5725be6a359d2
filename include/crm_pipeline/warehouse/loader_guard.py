"""CREATE on the database for the loader, and an event trigger that lets it create nothing with it.

Airbyte's Postgres destination runs ``CREATE SCHEMA IF NOT EXISTS`` in its connection check and at the start of
every sync (``check/PostgresOssChecker.kt``, ``write/PostgresWriter.kt``; docs/raw-contract.md), and PostgreSQL
checks CREATE on the database before it looks whether the schema exists: without that privilege the destination
cannot run as ``crm_loader`` at all. With it, the loader could create schemas, trusted extensions and
publications, and a schema named after another role would come first on that role's ``search_path``
(``"$user"``). So the privilege goes with an event trigger that refuses any of them the loader would create; a
``CREATE SCHEMA IF NOT EXISTS`` of a schema the deploy step made creates nothing and passes.

Only a superuser may create an event trigger. Run by an owner that is not one, the deploy step grants the loader
CREATE on the database only if a superuser installed the trigger before (docs/deploy.md).
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from crm_pipeline.warehouse.ddl import run_ddl

FUNCTION = "crm_audit.refuse_loader_creation()"
TRIGGER = "crm_loader_creates_nothing"
GUARDED = ("CREATE SCHEMA", "CREATE EXTENSION", "CREATE PUBLICATION")  # what CREATE on a database allows


def _function_ddl(loader: str) -> sql.Composed:
    # Not SECURITY DEFINER: current_user must stay whoever ran the statement.
    return sql.SQL(
        """create or replace function crm_audit.refuse_loader_creation() returns event_trigger
        language plpgsql set search_path = pg_catalog, pg_temp as $fn$
        declare
            created record;
        begin
            if current_user <> {loader} then
                return;
            end if;
            for created in select object_identity from pg_event_trigger_ddl_commands() loop
                raise exception '% may not run %: it would create %; the deploy step creates every schema it writes',
                    current_user, tg_tag, created.object_identity using errcode = 'insufficient_privilege';
            end loop;
        end
        $fn$"""
    ).format(loader=sql.Literal(loader))


def install(conn: psycopg.Connection, loader: str) -> bool:
    """Install (or refresh) the guard when the connected role is a superuser; whether the guard is in place."""
    superuser = conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()
    if superuser and superuser[0]:
        statements: list[str | sql.Composable] = [
            "create schema if not exists crm_audit",
            _function_ddl(loader),
            f"revoke all on function {FUNCTION} from public",
        ]
        exists = conn.execute("select 1 from pg_event_trigger where evtname = %s", (TRIGGER,)).fetchone()
        if exists:  # a superuser may have disabled it: the deploy turns it back on
            statements.append(sql.SQL("alter event trigger {} enable").format(sql.Identifier(TRIGGER)))
        else:
            tags = sql.SQL(", ").join(map(sql.Literal, GUARDED))
            statements.append(
                sql.SQL("create event trigger {} on ddl_command_end when tag in ({}) execute function {}").format(
                    sql.Identifier(TRIGGER), tags, sql.SQL(FUNCTION)
                )
            )
        run_ddl(conn, statements)
    return installed(conn)


def installed(conn: psycopg.Connection) -> bool:
    row = conn.execute("select evtenabled <> 'D' from pg_event_trigger where evtname = %s", (TRIGGER,)).fetchone()
    return bool(row and row[0])


def database_create(conn: psycopg.Connection, loader: str) -> sql.Composed:
    """The loader's CREATE on the database: granted while the guard is in place, revoked otherwise."""
    database, role = sql.Identifier(conn.info.dbname), sql.Identifier(loader)
    if installed(conn):
        return sql.SQL("grant create on database {} to {}").format(database, role)
    return sql.SQL("revoke create on database {} from {}").format(database, role)
