"""Idempotent DDL, run once at a time across every task that needs it, and only by a role that may.

Parallel tasks on a fresh warehouse all want ``create schema if not exists raw_hubspot`` and friends. Run inside
each task's long load transaction, the second one waits for the first to commit and then fails on PostgreSQL's
catalog unique index; retries would hide it. So DDL runs in its own short transaction, under one advisory lock.

The pipeline's own structure (the ``crm_audit`` tables, the audit log, the PII functions) belongs to the
warehouse's owner. The deploy step (``crm warehouse grants``, ``warehouse/roles.py``) installs all of it; the
pipeline's login roles may not change it (PostgreSQL refuses even ``create table if not exists`` on an existing
table without CREATE on its schema). So ``run_ddl`` on a pipeline role's connection executes nothing: it checks
that the tables the statements would create are there, and names the first one missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

DDL_LOCK_KEY = 0x43524D00  # "CRM\\0": one application-wide advisory lock for schema changes
# The login roles of ``warehouse/roles.py``: they use the structure the deploy step installed, never change it.
PIPELINE_ROLES = frozenset({"crm_loader", "crm_transformer", "crm_analyst", "crm_auditor"})
_CREATES_TABLE = re.compile(r"create\s+table\s+if\s+not\s+exists\s+([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)", re.I)


class StructureMissing(RuntimeError):
    """A pipeline role needs a table the deploy step has not installed."""


def runs_as_pipeline_role(conn: psycopg.Connection) -> bool:
    """Whether ``conn`` logged in as one of the pipeline's least-privilege roles (not the owner)."""
    return conn.info.user in PIPELINE_ROLES


@contextmanager
def ddl_transaction(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """A transaction holding the DDL lock; commit it before the long work that needs its objects."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
        yield conn


def run_ddl(conn: psycopg.Connection, statements: Iterable[str | sql.Composable]) -> None:
    """Execute idempotent statements in their own transaction, serialised with every other caller; on a pipeline
    role's connection, check instead that the tables they create exist (see the module's docstring)."""
    if runs_as_pipeline_role(conn):
        _check_installed(conn, statements)
        return
    with ddl_transaction(conn):
        for statement in statements:
            conn.execute(statement)


def _check_installed(conn: psycopg.Connection, statements: Iterable[str | sql.Composable]) -> None:
    tables = [m.groups() for s in statements if isinstance(s, str) for m in _CREATES_TABLE.finditer(s)]
    with conn.transaction():
        for schema, table in tables:
            if not table_exists(conn, schema, table):
                raise StructureMissing(
                    f"table {schema}.{table} is missing in database {conn.info.dbname!r}, and {conn.info.user}"
                    " may not create it: run the deploy step, `crm warehouse grants`, as the warehouse's owner"
                )


def ensure_schema(conn: psycopg.Connection, schema: str) -> None:
    """Create ``schema`` unless it exists: a pipeline role may use a schema it could not create (that takes CREATE
    on the database, which only the owner has), and ``create schema if not exists`` asks for it either way."""
    if conn.execute("select 1 from pg_namespace where nspname = %s", (schema,)).fetchone() is None:
        conn.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))


def split_script(script: str) -> list[str]:
    """A DDL script's statements (our scripts have no semicolons inside statements)."""
    return [s for s in script.split(";") if s.strip()]


def table_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    """Whether ``schema.table`` exists; the names are quoted by the server (``format('%I.%I')``), whatever they hold."""
    row = conn.execute("select to_regclass(format('%%I.%%I', %s::text, %s::text))", (schema, table)).fetchone()
    return bool(row and row[0])
