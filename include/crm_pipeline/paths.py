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
GX_DIR = LOCAL_DIR / "gx"

# The Airflow connection every task reaches the warehouse through.
WAREHOUSE_CONN_ID = "crm_warehouse"


def dbt_target_dir() -> Path:
    """dbt's target dir: ``DBT_TARGET_PATH`` when set (dbt reads it too), else ``dbt_project/target``.

    The image builds the manifest into ``dbt_project/target``; local runs set ``DBT_TARGET_PATH`` under
    ``.local/`` so the checkout stays clean.
    """
    return Path(os.environ.get("DBT_TARGET_PATH", DBT_PROJECT_DIR / "target"))


def dbt_manifest_path() -> Path:
    return dbt_target_dir() / "manifest.json"
