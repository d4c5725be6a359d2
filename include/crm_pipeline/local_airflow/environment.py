"""The environment every local Airflow process gets.

One function builds it so that ``make up``, ``make demo`` (``airflow dags test``) and the integration tests
run Airflow the same way: ``AIRFLOW_HOME`` under ``.local/airflow``, the metadata DB as its own database on the
warehouse server, the warehouse connection from the resolved warehouse URL, dbt and GX writing under
``.local/`` and phoning nowhere (this machine has no internet; a deployment may not either).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from crm_pipeline.local_airflow.preload import local_executor_environment
from crm_pipeline.paths import (
    AIRFLOW_HOME,
    DAGS_DIR,
    DBT_MANIFEST_VARIABLE,
    DBT_PROJECT_DIR,
    LOCAL_DIR,
    PROJECT_DIR,
    WAREHOUSE_CONN_ID,
)
from crm_pipeline.source_mode import MODE_VARIABLE, SIMULATOR
from crm_pipeline.warehouse import pii
from crm_pipeline.warehouse.roles import ROLES, role_url
from crm_pipeline.warehouse.url import WarehouseUrl


def local_secret(airflow_home: Path, name: str, factory: Callable[[], str]) -> str:
    """A secret generated once per AIRFLOW_HOME and kept there (mode 0600).

    Every component must share the JWT secret and the Fernet key: left to Airflow, components started together
    each generate their own, and the api-server then rejects the scheduler's task tokens ("Invalid auth token").
    """
    from crm_pipeline.warehouse.embedded import write_private

    path = airflow_home / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        write_private(path, factory())
    return path.read_text().strip()


def airflow_environment(
    warehouse: WarehouseUrl,
    metadata: WarehouseUrl,
    *,
    airflow_home: Path = AIRFLOW_HOME,
    api_port: int = 8080,
) -> dict[str, str]:
    """Variables to add to ``os.environ`` for any Airflow command run locally."""
    venv_bin = str(Path(sys.executable).parent)
    dbt_dir = LOCAL_DIR / "dbt"
    lineage_dir = airflow_home / "openlineage"
    lineage_dir.mkdir(parents=True, exist_ok=True)  # the file transport does not create it
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_DIR),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_DIR / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        # The first retry's wait; the CRM DAGs double it for each next try (orchestration/defaults.py).
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": os.environ.get("AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY", "20"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata.sqlalchemy("psycopg2"),
        "AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS": "False",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": local_secret(airflow_home, "jwt_secret", lambda: secrets.token_urlsafe(32)),
        "AIRFLOW__CORE__FERNET_KEY": local_secret(
            airflow_home, "fernet_key", lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        ),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        # Task processes fork from workers that have imported GX and dbt (preload.py).
        **local_executor_environment(),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}": warehouse.airflow_conn_uri(),
        # One connection per least-privilege role (crm warehouse grants), e.g. crm_warehouse_analyst.
        **{f"AIRFLOW_CONN_{r.conn_id.upper()}": role_url(warehouse, r).airflow_conn_uri() for r in ROLES},
        # The PII pepper (warehouse/pii.py): the configured connection, else this checkout's generated one.
        pii.PEPPER_VARIABLE: os.environ.get(pii.PEPPER_VARIABLE)
        or json.dumps({"conn_type": "generic", "password": pii.local_pepper()}),
        # Cosmos: the dbt docs page in the Airflow UI, and its cache under .local/.
        "AIRFLOW__COSMOS__CACHE_DIR": str(LOCAL_DIR / "cosmos"),
        "AIRFLOW__COSMOS__DBT_DOCS_PROJECTS": (
            '{"crm": {"dir": "' + str(dbt_dir / "target") + '", "name": "CRM warehouse"}}'
        ),
        # dbt: Cosmos renders from a manifest nobody else writes; task runs use Cosmos' own temporary targets.
        DBT_MANIFEST_VARIABLE: str(dbt_dir / "manifest" / "manifest.json"),
        "DBT_LOG_PATH": str(dbt_dir / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "DBT_PROFILES_DIR": str(DBT_PROJECT_DIR),
        "DO_NOT_TRACK": "1",
        # OpenLineage: every task's lineage event, appended to a file beside the logs (docs/operations.md).
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "crm",
        # Each task's lineage events from a thread of the task process, not a fork of it (decision 25).
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(lineage_dir / "events.jsonl"), "append": True}
        ),
        # GX: no analytics calls (its contexts are ephemeral; nothing is written to disk).
        "GX_ANALYTICS_ENABLED": "False",
        "CRM_PROJECT_DIR": str(PROJECT_DIR),
        # Local Airflow is for development: streams come from the simulator unless the environment says otherwise
        # (a deployment's default is Airbyte: source_mode.py).
        MODE_VARIABLE: os.environ.get(MODE_VARIABLE) or SIMULATOR,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
        "NO_PROXY": "127.0.0.1,localhost",
    }
