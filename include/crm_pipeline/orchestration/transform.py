"""The dbt project as Cosmos renders it: configs built once here, imported by every DAG that transforms.

Rendering reads the manifest (``LoadMode.DBT_MANIFEST``), so parsing a DAG runs no dbt and opens no socket;
``make manifest`` (locally) and the Dockerfile (in the image) build it. Tasks run dbt in Airflow's own
environment through ``dbtRunner`` (``InvocationMode.DBT_RUNNER``), which docs/decisions.md justifies by
measurement. The dbt profile comes from the ``crm_warehouse_transformer`` Airflow connection:
dbt runs as the transformer role, which owns what it builds (``warehouse/roles.py``).
"""

from __future__ import annotations

import gc
from typing import Any

from airflow.sdk import TaskGroup, chain
from airflow.sdk.exceptions import AirflowSkipException
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import ExecutionMode, InvocationMode, LoadMode, TestBehavior
from cosmos.profiles import PostgresUserPasswordProfileMapping

from crm_pipeline.orchestration import dbt_flag_source
from crm_pipeline.paths import DBT_PROJECT_DIR, TRANSFORMER_CONN_ID, dbt_manifest_path

SELECTION_TASK_ID = "arrived"  # the transform DAG's first task: its XCom says which dbt nodes run
DBT_PROFILE = "crm"
DBT_TARGET = "airflow"

PROFILE_CONFIG = ProfileConfig(
    profile_name=DBT_PROFILE,
    target_name=DBT_TARGET,
    profile_mapping=PostgresUserPasswordProfileMapping(
        conn_id=TRANSFORMER_CONN_ID, profile_args={"schema": "analytics"}
    ),
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
        operator_args={
            "install_deps": False,
            "pool": "dbt",  # airflow_settings.yaml: how many dbt invocations may run at once
            # The DAG's ``full_refresh`` param: rebuild incremental models and snapshots from scratch.
            "full_refresh": "{{ params.get('full_refresh', False) }}",
            # Build only what the run selected; a skipped upstream (nothing it reads changed) is no reason to stop.
            "pre_execute": before_dbt,
            "trigger_rule": "none_failed",
        },
    )


def node_selected(selection: dict[str, Any], unique_id: str | None) -> bool:
    """Whether a run's selection (``Selection.summary()``) builds the node; a task without a node id always runs."""
    return bool(selection.get("everything", True)) or unique_id is None or unique_id in selection.get("nodes", ())


def skip_unless_selected(context: Any) -> None:
    """Each dbt task's ``pre_execute``: skip the task when the run's selection (``arrived``'s XCom, decided by
    ``orchestration/selection.py``) leaves its node out. Reads the node's id from what Cosmos gives each task
    (``extra_context['dbt_node_config']``); a task without one always runs."""
    ti = context["ti"]
    node = (getattr(ti.task, "extra_context", None) or {}).get("dbt_node_config") or {}
    unique_id = node.get("unique_id")
    selection = (ti.xcom_pull(task_ids=SELECTION_TASK_ID) or {}).get("selection") or {"everything": True}
    if not node_selected(selection, unique_id):
        raise AirflowSkipException(f"{unique_id}: nothing it reads changed since the last publish")


def before_dbt(context: Any) -> None:
    """Each dbt task's ``pre_execute``: skip unless selected (``skip_unless_selected``), name dbt's behaviour flag
    sources without reading the stack's source files (``dbt_flag_source.py``), then freeze the heap.

    After every dbtRunner call Cosmos resets dbt's adapters and runs a full ``gc.collect()`` (Cosmos issue 2334),
    which walks every object the task process holds: Airflow, Cosmos, dbt and GX, imported and alive for the whole
    task. ``gc.freeze()`` moves what exists now into the collector's permanent generation, so that collection walks
    only what the dbt run created. Measured at XS (docs/performance.md): a model task went from about 0.9 s to
    0.5 s, the transform DAG from 59 s to 41 s. What is frozen is never collected, which in a task's own process
    (how executors run tasks) is the imports and the DAG, alive until the process ends anyway."""
    skip_unless_selected(context)
    dbt_flag_source.install()
    gc.freeze()


def dbt_task_group(group_id: str) -> TaskGroup:
    """The dbt project as one task group holding a Cosmos task group per layer (staging, snapshots,
    intermediate, marts), run in that order; inside each, one task per model running ``dbt build`` on it (the
    model, then its data and unit tests), and a task per test that spans two models once both are built.

    Per layer rather than Cosmos' ``group_nodes_by_folder``: that option puts every test spanning two models into
    the last folder's group (Cosmos 1.15), which would show mart tests under staging."""
    with TaskGroup(group_id, tooltip="dbt via Cosmos, layer by layer") as group:
        layers = [_layer(*layer) for layer in LAYERS]
        share_parse_cache(layers)
        chain(*layers)
    return group


def share_parse_cache(layers: list[DbtTaskGroup]) -> None:
    """Point every layer's tasks at the first layer's partial-parse cache.

    Cosmos keeps one cache per task group, but the four layers parse the same project with the same profile. With
    one cache per layer, the first task of each layer parses the whole project again whenever the cache is cold or
    was written for another profile (dbt hashes the connection, database included, into its partial-parse check):
    four full parses instead of one (docs/performance.md)."""
    tasks = [task for layer in layers for task in layer.iter_tasks() if getattr(task, "cache_dir", None) is not None]
    if tasks:
        shared = tasks[0].cache_dir
        for task in tasks:
            task.cache_dir = shared
