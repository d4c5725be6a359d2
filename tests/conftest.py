"""Test-wide setup. Airflow reads its configuration at import, so the environment is set here, first.

Unit and DAG tests get an ``AIRFLOW_HOME`` in a temporary directory and a SQLite metadata DB they never touch;
integration tests build their own environment around a real PostgreSQL (see tests/integration/conftest.py).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]
_home = Path(tempfile.mkdtemp(prefix="crm-tests-airflow-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_DIR / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_home / 'unused.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "CRM_DBT_MANIFEST": os.environ.get(
            "CRM_DBT_MANIFEST", str(PROJECT_DIR / ".local" / "dbt" / "manifest" / "manifest.json")
        ),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "GX_ANALYTICS_ENABLED": "False",
    }
)
