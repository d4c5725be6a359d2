"""The one way to find the warehouse.

Outside Airflow tasks (CLI, demo, tests): ``CRM_WAREHOUSE_URL`` when set, else the embedded server.
Inside Airflow tasks: the ``crm_warehouse`` Airflow connection, which the local tooling sets from the same
resolution (``AIRFLOW_CONN_CRM_WAREHOUSE``) and a deployment sets from its secrets backend.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg

from crm_pipeline.errors import WarehouseConfigError
from crm_pipeline.paths import WAREHOUSE_CONN_ID
from crm_pipeline.warehouse.embedded import AIRFLOW_DATABASE, EmbeddedWarehouse
from crm_pipeline.warehouse.url import URL_VARIABLE, WarehouseUrl, check_reachable, parse_warehouse_url


def resolve_warehouse_url(*, start_embedded: bool = True) -> WarehouseUrl:
    """``CRM_WAREHOUSE_URL`` (checked: parseable, reachable, PostgreSQL >= 15) or the embedded server."""
    configured = os.environ.get(URL_VARIABLE, "").strip()
    if configured:
        url = parse_warehouse_url(configured)
        check_reachable(url)
        return url
    embedded = EmbeddedWarehouse()
    return embedded.up() if start_embedded else embedded.url()


def airflow_metadata_url(warehouse: WarehouseUrl) -> WarehouseUrl:
    """Airflow's metadata DB: its own database on the warehouse server (``CRM_AIRFLOW_DB``, default ``airflow``)."""
    name = os.environ.get("CRM_AIRFLOW_DB", AIRFLOW_DATABASE)
    ensure_database(warehouse, name)
    return warehouse.with_database(name)


def ensure_database(server: WarehouseUrl, name: str) -> None:
    """Create database ``name`` on ``server`` unless it exists."""
    try:
        with psycopg.connect(server.with_database("postgres").libpq(), autocommit=True, connect_timeout=5) as conn:
            if conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone() is None:
                conn.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(name)))
    except psycopg.Error as exc:
        raise WarehouseConfigError(f"cannot create database {name!r} on {server.redacted()}: {exc}") from None


def drop_database(server: WarehouseUrl, name: str) -> None:
    """Drop database ``name`` on ``server``, disconnecting its sessions (scratch databases of tests and benches)."""
    with psycopg.connect(server.with_database("postgres").libpq(), autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("drop database if exists {} with (force)").format(psycopg.sql.Identifier(name)))


def task_warehouse_url(conn_id: str) -> WarehouseUrl:
    """The warehouse as an Airflow task sees it through ``conn_id``: the connection of the least role the task
    needs (``paths.LOADER_CONN_ID`` and its siblings), the owner's only for the erasure."""
    from airflow.sdk import BaseHook

    return url_from_connection(BaseHook.get_connection(conn_id), conn_id)


def url_from_connection(conn: Any, conn_id: str = WAREHOUSE_CONN_ID) -> WarehouseUrl:
    """The warehouse an Airflow connection (any process's view of it: a task's, the api-server's) points at."""
    if not conn.host or not conn.schema:
        raise WarehouseConfigError(f"Airflow connection {conn_id!r} needs a host and a schema (database)")
    return WarehouseUrl(conn.host, int(conn.port or 5432), conn.login or "postgres", conn.password or None, conn.schema)


def connect(url: WarehouseUrl, *, autocommit: bool = False) -> psycopg.Connection:
    return psycopg.connect(url.libpq(), autocommit=autocommit, connect_timeout=10)
