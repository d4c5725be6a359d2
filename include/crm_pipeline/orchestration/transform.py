"""The dbt project as Cosmos renders it: configs built once here, imported by every DAG that transforms.

Rendering reads the manifest (``LoadMode.DBT_MANIFEST``), so parsing a DAG runs no dbt and opens no socket;
``make manifest`` (locally) and the Dockerfile (in the image) build it. Tasks run dbt in Airflow's own
environment through ``dbtRunner`` (``InvocationMode.DBT_RUNNER``), which docs/decisions.md justifies by
measurement. The dbt profile comes from the ``crm_warehouse`` Airflow connection.
"""

from __future__ import annotations

from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior
from cosmos.profiles import PostgresUserPasswordProfileMapping

from crm_pipeline.paths import DBT_PROJECT_DIR, WAREHOUSE_CONN_ID, dbt_manifest_path

DBT_PROFILE = "crm"
DBT_TARGET = "airflow"

PROFILE_CONFIG = ProfileConfig(
    profile_name=DBT_PROFILE,
    target_name=DBT_TARGET,
    profile_mapping=PostgresUserPasswordProfileMapping(conn_id=WAREHOUSE_CONN_ID, profile_args={"schema": "analytics"}),
)
EXECUTION_CONFIG = ExecutionConfig(execution_mode=ExecutionMode.LOCAL, invocation_mode=InvocationMode.DBT_RUNNER)


def project_config() -> ProjectConfig:
    manifest = dbt_manifest_path()
    if not manifest.exists():
        raise FileNotFoundError(f"dbt manifest not found at {manifest}: run `make manifest` (or `crm dbt manifest`)")
    return ProjectConfig(dbt_project_path=DBT_PROJECT_DIR, manifest_path=manifest)


def dbt_task_group(group_id: str) -> DbtTaskGroup:
    """A Cosmos task group over the dbt project: one task per model, its tests right after it."""
    return DbtTaskGroup(
        group_id=group_id,
        project_config=project_config(),
        profile_config=PROFILE_CONFIG,
        execution_config=EXECUTION_CONFIG,
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            test_behavior=TestBehavior.AFTER_EACH,
            # A test over two models (relationships) runs once both exist, not after the first of them.
            should_detach_multiple_parents_tests=True,
        ),
        operator_args={"install_deps": False},
    )
