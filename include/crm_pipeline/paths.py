"""Where the project and its local state live.

The package sits at ``<project>/include/crm_pipeline`` both in a checkout and in the Astro image
(``/usr/local/airflow``), so the project root is derived from this file. ``CRM_PROJECT_DIR`` overrides it
for tools that run the package from elsewhere. Everything a local run writes goes under ``.local/`` so a
checkout stays clean.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_DIR = Path(os.environ.get("CRM_PROJECT_DIR", Path(__file__).resolve().parents[2]))
LOCAL_DIR = Path(os.environ.get("CRM_LOCAL_DIR", PROJECT_DIR / ".local"))

DAGS_DIR = PROJECT_DIR / "dags"
DBT_PROJECT_DIR = PROJECT_DIR / "dbt_project"
CATALOGUE_FILE = PROJECT_DIR / "include" / "crm_streams.yml"
AIRFLOW_SETTINGS_FILE = PROJECT_DIR / "airflow_settings.yaml"

WAREHOUSE_DIR = LOCAL_DIR / "warehouse"
AIRFLOW_HOME = LOCAL_DIR / "airflow"

# The warehouse owner's Airflow connection: the deploy step (grants), the CLI, the erasure.
WAREHOUSE_CONN_ID = "crm_warehouse"
# The connections tasks log in through, one per least-privilege role (``warehouse/roles.py``).
LOADER_CONN_ID = f"{WAREHOUSE_CONN_ID}_loader"
TRANSFORMER_CONN_ID = f"{WAREHOUSE_CONN_ID}_transformer"
AUDITOR_CONN_ID = f"{WAREHOUSE_CONN_ID}_auditor"


DBT_MANIFEST_VARIABLE = "CRM_DBT_MANIFEST"


def dbt_manifest_path() -> Path:
    """The manifest Cosmos renders from: ``CRM_DBT_MANIFEST`` (local runs: ``.local/dbt/manifest/``), else the one
    the image build wrote to ``dbt_project/target``.

    Only ``crm manifest`` or the image build write it. dbt commands that tasks run must never write there: running
    tasks would overwrite it while other tasks parse it (we saw truncated JSON under the real scheduler).
    """
    return Path(os.environ.get(DBT_MANIFEST_VARIABLE, DBT_PROJECT_DIR / "target" / "manifest.json"))


REPORT_VARIABLE = "CRM_REPORT_DIR"


def report_path() -> Path:
    """The health page: ``$CRM_REPORT_DIR/health.html``, by default ``.local/report/`` (in a deployment, a volume
    the webserver's host serves, or the Airflow logs' folder)."""
    return Path(os.environ.get(REPORT_VARIABLE, LOCAL_DIR / "report")) / "health.html"
