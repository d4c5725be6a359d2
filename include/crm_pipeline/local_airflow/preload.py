"""Warm workers: the heavy third-party modules a task imports, loaded once in the process its task processes fork
from, so each task inherits them instead of importing them again.

Airflow runs every task in a process forked from its executor's worker (the LocalExecutor's workers, a Celery
worker's pool). A raw gate imports Great Expectations (about 2.5 s on this 2-core machine) and a Cosmos task
imports dbt (about 2 s) in that fresh process, every time. Only third-party libraries are preloaded: the
project's own modules (``crm_pipeline``) are imported fresh by every task, so an edited module takes effect on
the next task without restarting the workers. Measurements: docs/performance.md.
"""

from __future__ import annotations

PRELOAD_MODULES = ("great_expectations", "dbt.cli.main", "cosmos.operators.local", "psycopg")


def local_executor_environment() -> dict[str, str]:
    """The LocalExecutor's workers come from the scheduler's ``multiprocessing`` context: a forkserver that has
    imported :data:`PRELOAD_MODULES` (Airflow 3.3's ``mp_start_method`` and ``mp_forkserver_preload``), so the
    scheduler itself stays light."""
    return {
        "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
        "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": ",".join(PRELOAD_MODULES),
    }
