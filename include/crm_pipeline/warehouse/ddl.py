"""Idempotent DDL, run once at a time across every task that needs it.

Parallel tasks on a fresh warehouse all want ``create schema if not exists raw_hubspot`` and friends. Run inside
each task's long load transaction, the second one waits for the first to commit and then fails on PostgreSQL's
catalog unique index; retries would hide it. So DDL runs in its own short transaction, under one advisory lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

DDL_LOCK_KEY = 0x43524D00  # "CRM\\0": one application-wide advisory lock for schema changes


@contextmanager
def ddl_transaction(conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """A transaction holding the DDL lock; commit it before the long work that needs its objects."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
        yield conn


def run_ddl(conn: psycopg.Connection, statements: Iterable[str | sql.Composable]) -> None:
    """Execute idempotent statements in their own transaction, serialised with every other caller."""
    with ddl_transaction(conn):
        for statement in statements:
            conn.execute(statement)


def split_script(script: str) -> list[str]:
    """A DDL script's statements (our scripts have no semicolons inside statements)."""
    return [s for s in script.split(";") if s.strip()]


def table_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    """Whether ``schema.table`` exists; the names are quoted by the server (``format('%I.%I')``), whatever they hold."""
    row = conn.execute("select to_regclass(format('%%I.%%I', %s::text, %s::text))", (schema, table)).fetchone()
    return bool(row and row[0])
