"""The dbt project as Cosmos renders it: configs built once here, imported by every DAG that transforms.

Rendering reads the manifest (``LoadMode.DBT_MANIFEST``), so parsing a DAG runs no dbt and opens no socket;
``make manifest`` (locally) and the Dockerfile (in the image) build it. Tasks run dbt in Airflow's own
environment through ``dbtRunner`` (``InvocationMode.DBT_RUNNER``), which docs/decisions.md justifies by
measurement. The dbt profile comes from the ``crm_warehouse`` Airflow connection.
"""

from __future__ import annotations

from airflow.sdk import TaskGroup, chain
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


# The layers in build order, each one Cosmos task group: (group id, dbt selector, tooltip).
LAYERS: tuple[tuple[str, str, str], ...] = (
    ("staging", "path:models/staging", "one view per raw table: renamed, cast, normalised, deduplicated"),
    ("snapshots", "path:snapshots", "versions of records whose sources keep no history"),
    ("intermediate", "path:models/intermediate", "both CRMs unioned; people, accounts and owners resolved"),
    ("marts", "path:models/marts", "what analysts read: dimensions, facts, analysis marts"),
)


def _layer(group_id: str, select: str, tooltip: str) -> DbtTaskGroup:
    return DbtTaskGroup(
        group_id=group_id,
        tooltip=tooltip,
        project_config=project_config(),
        profile_config=PROFILE_CONFIG,
        execution_config=EXECUTION_CONFIG,
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            select=[select],
            test_behavior=TestBehavior.BUILD,
            # A test over two models (relationships) runs once both exist, not after the first of them.
            should_detach_multiple_parents_tests=True,
        ),
        # The DAG's ``full_refresh`` param: rebuild incremental models and snapshots from scratch.
        operator_args={"install_deps": False, "full_refresh": "{{ params.get('full_refresh', False) }}"},
    )


def dbt_task_group(group_id: str) -> TaskGroup:
    """The dbt project as one task group holding a Cosmos task group per layer (staging, snapshots,
    intermediate, marts), run in that order; inside each, one task per model running ``dbt build`` on it (the
    model, then its data and unit tests), and a task per test that spans two models once both are built.

    Per layer rather than Cosmos' ``group_nodes_by_folder``: that option puts every test spanning two models into
    the last folder's group (Cosmos 1.15), which would show mart tests under staging."""
    with TaskGroup(group_id, tooltip="dbt via Cosmos, layer by layer") as group:
        layers = [_layer(*layer) for layer in LAYERS]
        chain(*layers)
    return group
