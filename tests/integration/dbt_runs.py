"""Bare dbt runs and simulated syncs for the integration tests that drive the dbt project without Airflow.

``CRM_TEST_SCALE=M`` makes the modules that use :data:`SCALE` run at scale M (S in CI).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psycopg
from conftest import VENV_BIN

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.local_airflow.runner import dbt_env
from crm_pipeline.paths import DBT_PROJECT_DIR
from crm_pipeline.sources.simulator.sync import run_sync
from crm_pipeline.warehouse import pii
from crm_pipeline.warehouse.publish import publish_marts
from crm_pipeline.warehouse.url import WarehouseUrl

SCALE = os.environ.get("CRM_TEST_SCALE", "S")
SEED = 5


def run_dbt(
    warehouse: WarehouseUrl, target: Path, *args: str, project: Path = DBT_PROJECT_DIR
) -> subprocess.CompletedProcess[str]:
    with psycopg.connect(warehouse.libpq()) as conn:
        pii.install_key(conn, pii.pii_pepper())  # what the transform DAG's first task does
    return subprocess.run(
        [str(VENV_BIN / "dbt"), *args, "--project-dir", str(project), "--profiles-dir", str(DBT_PROJECT_DIR)],
        env={**dbt_env(warehouse, dict(os.environ)), "DBT_TARGET_PATH": str(target), "DBT_LOG_PATH": str(target)},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def dbt(warehouse: WarehouseUrl, target: Path, *args: str, project: Path = DBT_PROJECT_DIR) -> str:
    """Run dbt against ``warehouse``; fail the test with dbt's output when it fails."""
    result = run_dbt(warehouse, target, *args, project=project)
    assert result.returncode == 0, result.stdout[-5000:]
    return result.stdout


def build_and_publish(warehouse: WarehouseUrl, target: Path, *args: str, project: Path = DBT_PROJECT_DIR) -> None:
    """``dbt build`` writes marts_build; publishing swaps it in as the marts analysts read (write-audit-publish)."""
    dbt(warehouse, target, "build", *args, project=project)
    with psycopg.connect(warehouse.libpq()) as conn:
        publish_marts(conn, "test")


def sync_all(warehouse: WarehouseUrl, scale: str = SCALE) -> None:
    with psycopg.connect(warehouse.libpq()) as conn:
        for spec in default_catalogue().enabled():
            run_sync(conn, spec, seed=SEED, scale=scale)  # type: ignore[arg-type]
            conn.commit()


def checksum(conn: psycopg.Connection, table: str, key: str, schema: str = "marts") -> tuple[int, str]:
    row = conn.execute(f"select count(*), md5(string_agg(t::text, '|' order by {key})) from {schema}.{table} t")
    return row.fetchone()  # type: ignore[return-value]
