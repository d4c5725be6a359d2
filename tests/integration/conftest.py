"""Integration fixtures: real PostgreSQL, real Airflow (``airflow dags test``), real dbt through Cosmos, real GX.

The server is the embedded one (or ``CRM_WAREHOUSE_URL``). Each test gets its own warehouse database, and the
session gets its own Airflow metadata database and AIRFLOW_HOME, so tests never see each other's data or the
demo's, and everything they create is dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from crm_pipeline.local_airflow.environment import airflow_environment
from crm_pipeline.warehouse.locate import ensure_database, resolve_warehouse_url
from crm_pipeline.warehouse.url import WarehouseUrl

VENV_BIN = Path(sys.executable).parent


def _drop_database(server: WarehouseUrl, name: str) -> None:
    with psycopg.connect(server.with_database("postgres").libpq(), autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def server() -> WarehouseUrl:
    return resolve_warehouse_url()


@pytest.fixture(scope="session")
def metadata_db(server: WarehouseUrl) -> Iterator[WarehouseUrl]:
    name = f"airflow_it_{uuid.uuid4().hex[:8]}"
    ensure_database(server, name)
    yield server.with_database(name)
    _drop_database(server, name)


@pytest.fixture
def warehouse(server: WarehouseUrl) -> Iterator[WarehouseUrl]:
    name = f"crm_it_{uuid.uuid4().hex[:8]}"
    ensure_database(server, name)
    yield server.with_database(name)
    _drop_database(server, name)


@dataclass
class AirflowRun:
    returncode: int
    log: str
    run_id: str


@dataclass
class LocalAirflow:
    """Runs Airflow CLI commands for one warehouse database with the session's metadata DB."""

    home: Path
    metadata: WarehouseUrl

    def env(self, warehouse: WarehouseUrl, variables: dict[str, str]) -> dict[str, str]:
        env = {**os.environ, **airflow_environment(warehouse, self.metadata, airflow_home=self.home)}
        env.update({f"AIRFLOW_VAR_{k.upper()}": v for k, v in variables.items()})
        return env

    def dags_test(
        self, dag_id: str, warehouse: WarehouseUrl, extra_env: dict[str, str] | None = None, **variables: str
    ) -> AirflowRun:
        proc = subprocess.run(
            [str(VENV_BIN / "airflow"), "dags", "test", dag_id],
            env={**self.env(warehouse, variables), **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        with psycopg.connect(self.metadata.libpq()) as conn:
            row = conn.execute(
                "select run_id from dag_run where dag_id = %s order by id desc limit 1", (dag_id,)
            ).fetchone()
        return AirflowRun(proc.returncode, proc.stdout + proc.stderr, row[0] if row else "")

    def asset_events(self, dag_id: str, run_id: str) -> dict[str, str]:
        """``{asset uri: task that emitted it}`` for one run."""
        with psycopg.connect(self.metadata.libpq()) as conn:
            rows = conn.execute(
                "select a.uri, e.source_task_id from asset_event e join asset a on a.id = e.asset_id"
                " where e.source_dag_id = %s and e.source_run_id = %s",
                (dag_id, run_id),
            ).fetchall()
        return dict(rows)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """``{task id: state}``; a mapped task's instances as ``task_id[rendered map index]``."""
        return task_states(self.metadata, dag_id, run_id)


def task_states(metadata: WarehouseUrl | str, dag_id: str, run_id: str | None = None) -> dict[str, str | None]:
    """Task states of one run (the latest when ``run_id`` is None); mapped instances as ``task_id[map index name]``."""
    libpq = metadata if isinstance(metadata, str) else metadata.libpq()
    with psycopg.connect(libpq) as conn:
        rows = conn.execute(
            "select task_id, map_index, rendered_map_index, state from task_instance where dag_id = %s and run_id ="
            " coalesce(%s, (select run_id from dag_run where dag_id = %s order by id desc limit 1))",
            (dag_id, run_id, dag_id),
        ).fetchall()
    return {
        task_id if index < 0 else f"{task_id}[{rendered or index}]": state for task_id, index, rendered, state in rows
    }


@pytest.fixture(scope="session")
def local_airflow(
    metadata_db: WarehouseUrl, server: WarehouseUrl, tmp_path_factory: pytest.TempPathFactory
) -> LocalAirflow:
    airflow = LocalAirflow(home=tmp_path_factory.mktemp("airflow_home"), metadata=metadata_db)
    subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"],
        env=airflow.env(server, {}),
        check=True,
        capture_output=True,
        timeout=600,
    )
    return airflow
