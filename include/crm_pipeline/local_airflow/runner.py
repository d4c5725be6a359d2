"""Run Airflow and dbt commands locally with the project's environment.

Resolving the warehouse (and starting the embedded one) happens once per command, here, so ``make`` targets,
the demo and the tests all get the same URLs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from crm_pipeline.local_airflow.environment import airflow_environment
from crm_pipeline.paths import AIRFLOW_HOME, DBT_PROJECT_DIR
from crm_pipeline.warehouse.locate import airflow_metadata_url, resolve_warehouse_url
from crm_pipeline.warehouse.url import WarehouseUrl

VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class LocalStack:
    warehouse: WarehouseUrl
    metadata: WarehouseUrl
    env: dict[str, str]


def local_stack(*, airflow_home: Path = AIRFLOW_HOME, api_port: int = 8080) -> LocalStack:
    warehouse = resolve_warehouse_url()
    metadata = airflow_metadata_url(warehouse)
    env = {**os.environ, **airflow_environment(warehouse, metadata, airflow_home=airflow_home, api_port=api_port)}
    return LocalStack(warehouse, metadata, env)


def dbt_env(warehouse: WarehouseUrl, base: dict[str, str]) -> dict[str, str]:
    """Variables ``dbt_project/profiles.yml`` reads, for bare dbt runs outside Airflow."""
    return {
        **base,
        "CRM_WAREHOUSE_HOST": warehouse.host,
        "CRM_WAREHOUSE_PORT": str(warehouse.port),
        "CRM_WAREHOUSE_USER": warehouse.user,
        "CRM_WAREHOUSE_PASSWORD": warehouse.password or "",
        "CRM_WAREHOUSE_DB": warehouse.database,
    }


def run_airflow(stack: LocalStack, *args: str, check: bool = True, quiet: bool = False) -> int:
    proc = subprocess.run([str(VENV_BIN / "airflow"), *args], env=stack.env, check=False,
                          stdout=subprocess.DEVNULL if quiet else None, stderr=subprocess.STDOUT if quiet else None)
    if check and proc.returncode != 0:
        raise SystemExit(f"airflow {' '.join(args)} failed with exit code {proc.returncode}")
    return proc.returncode


def run_dbt(stack: LocalStack, *args: str, check: bool = True) -> int:
    env = dbt_env(stack.warehouse, stack.env)
    argv = [str(VENV_BIN / "dbt"), *args, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    proc = subprocess.run(argv, env=env, check=False)
    if check and proc.returncode != 0:
        raise SystemExit(f"dbt {' '.join(args)} failed with exit code {proc.returncode}")
    return proc.returncode


def build_manifest(stack: LocalStack) -> Path:
    """``dbt parse``: the manifest Cosmos renders from. No warehouse connection needed."""
    run_dbt(stack, "parse", "--quiet")
    return Path(stack.env["DBT_TARGET_PATH"]) / "manifest.json"
