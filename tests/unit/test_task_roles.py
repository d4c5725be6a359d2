"""Which role each task logs in as, read from the code the tasks run: the least one it needs (docs/security.md).
Behaviour under those roles is tested on real PostgreSQL roles in tests/integration/test_warehouse_roles.py and by
every DAG run in the integration tests."""

from __future__ import annotations

import ast
import inspect

import pytest

from crm_pipeline import paths
from crm_pipeline.orchestration import airbyte, erasure, monitor, replay, tasks, transform
from crm_pipeline.warehouse import publish
from crm_pipeline.warehouse.ddl import PIPELINE_ROLES
from crm_pipeline.warehouse.roles import ANALYST, AUDITOR, LOADER, ROLES, TRANSFORMER


def test_every_module_agrees_on_the_roles_and_their_connections() -> None:
    assert {r.name for r in ROLES} == PIPELINE_ROLES
    assert (LOADER.conn_id, TRANSFORMER.conn_id, AUDITOR.conn_id) == (
        paths.LOADER_CONN_ID,
        paths.TRANSFORMER_CONN_ID,
        paths.AUDITOR_CONN_ID,
    )
    assert ANALYST.name == publish.ANALYST


WAREHOUSE_CONN_IDS = {"LOADER_CONN_ID", "TRANSFORMER_CONN_ID", "AUDITOR_CONN_ID", "WAREHOUSE_CONN_ID"}


def _conn_ids(function: object) -> set[str]:
    """The warehouse connections a task's source names (what it passes to ``task_warehouse_url`` and ``end``)."""
    tree = ast.parse(inspect.getsource(function).lstrip())  # type: ignore[arg-type]
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id in WAREHOUSE_CONN_IDS}


@pytest.mark.parametrize(
    ("module", "task", "conn_id"),
    [
        (tasks, "sync_stream", "LOADER_CONN_ID"),
        (tasks, "gate_raw", "TRANSFORMER_CONN_ID"),
        (tasks, "admit", "TRANSFORMER_CONN_ID"),
        (tasks, "held_back", "AUDITOR_CONN_ID"),
        (tasks, "arrived", "TRANSFORMER_CONN_ID"),
        (tasks, "release_raw", "TRANSFORMER_CONN_ID"),
        (tasks, "audit_marts", "TRANSFORMER_CONN_ID"),
        (tasks, "publish_marts", "TRANSFORMER_CONN_ID"),
        (replay, "reset", "LOADER_CONN_ID"),
        (monitor, "check_freshness", "AUDITOR_CONN_ID"),
        (monitor, "health_page", "AUDITOR_CONN_ID"),
        (airbyte, "store_airbyte_job", "LOADER_CONN_ID"),
        (erasure, "erase", "WAREHOUSE_CONN_ID"),  # the one task that deletes from every schema
    ],
    ids=lambda value: value if isinstance(value, str) and not value.endswith("_CONN_ID") else "",
)
def test_each_task_logs_in_as_its_least_role(module: object, task: str, conn_id: str) -> None:
    function = getattr(module, task)
    assert _conn_ids(getattr(function, "function", function)) == {conn_id}


def test_dbt_runs_as_the_transformer() -> None:
    assert transform.PROFILE_CONFIG.profile_mapping.conn_id == paths.TRANSFORMER_CONN_ID
