"""Warm workers: the heavy third-party modules a task imports, loaded once in the process its task processes fork
from, so each task inherits them instead of importing them again.

Airflow runs every task in a process forked from its executor's worker (the LocalExecutor's workers, a Celery
worker's pool). A raw gate imports Great Expectations (about 2.5 s on this 2-core machine) and a Cosmos task
imports dbt (about 2 s) in that fresh process, every time; before the list below was complete, a third of a dbt
task's CPU still went to imports (dbt's commands, Cosmos, FastAPI for Cosmos' plugin). Only third-party libraries
are preloaded: the project's own modules (``crm_pipeline``) are imported fresh by every task, so an edited module
takes effect on the next task without restarting the workers. Measurements: docs/performance.md.
"""

from __future__ import annotations

PRELOAD_MODULES = (
    "great_expectations",
    "psycopg",
    # A Cosmos task: dbt, its build and test commands, the Postgres adapter and agate, which dbt imports only
    # when a command runs; Cosmos itself (the task process parses the DAG file, which builds the task groups).
    "dbt.cli.main",
    "dbt.task.build",
    "dbt.task.test",
    "dbt.adapters.postgres",
    "dbt_common.clients.agate_helper",
    "cosmos",
    "cosmos.airflow.task_group",
    "cosmos.profiles",
    "cosmos.operators.local",
    "openlineage.common.provider.dbt",
    # Every task: the plugins Airflow loads at task start (Cosmos' docs plugin imports FastAPI; OpenLineage's
    # listener), and the DAG bag the task parses its DAG file with.
    "cosmos.plugin.airflow3",
    "airflow.providers.openlineage.plugins.openlineage",
    "airflow.dag_processing.dagbag",
    "sqlparse",
)


def local_executor_environment() -> dict[str, str]:
    """The LocalExecutor's workers come from the scheduler's ``multiprocessing`` context: a forkserver that has
    imported :data:`PRELOAD_MODULES` (Airflow 3.3's ``mp_start_method`` and ``mp_forkserver_preload``), so the
    scheduler itself stays light."""
    return {
        "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
        "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": ",".join(PRELOAD_MODULES),
    }
