"""The Airbyte path: trigger a connection's sync through the provider, record the job, hand the batch to the gates.

Which path a connection takes is decided when the DAG runs, not when it is parsed (parsing reads no Variables):
``route_connection`` follows the Airbyte task when the connection's Variable holds a connection id, else the
simulator's per-stream tasks. Streams of one connection share one Airbyte job; the job id is what Airbyte stamps
as ``_airbyte_meta.sync_id``, so each stream's gate checks exactly the rows of that job.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.providers.airbyte.operators.airbyte import AirbyteTriggerSyncOperator
from airflow.sdk import Variable, get_current_context, task
from airflow.sdk.exceptions import AirflowException

from crm_pipeline.catalogue import StreamSpec, default_catalogue

AIRBYTE_CONN_ID = "airbyte_default"
# How long one Airbyte sync may take before its job is cancelled (read from the environment, not a Variable:
# execution_timeout is fixed when the DAG is parsed).
SYNC_TIMEOUT = timedelta(minutes=float(os.environ.get("CRM_AIRBYTE_SYNC_TIMEOUT_MINUTES", "120")))

JOBS_DDL = """
create schema if not exists crm_audit;
create table if not exists crm_audit.airbyte_jobs (
    job_id bigint primary key,
    connection_variable text not null,
    connection_id text not null,
    streams text[] not null,
    status text not null,
    rows_synced bigint,
    bytes_synced bigint,
    duration text,
    started_at timestamptz,
    run_id text,
    recorded_at timestamptz not null default now()
)
"""


def connection_groups() -> dict[str, list[StreamSpec]]:
    """Enabled streams grouped by the Variable that names their Airbyte connection, in catalogue order."""
    groups: dict[str, list[StreamSpec]] = {}
    for spec in default_catalogue().enabled():
        groups.setdefault(spec.airbyte_connection.variable, []).append(spec)
    return groups


class CrmAirbyteSyncOperator(AirbyteTriggerSyncOperator):
    """The provider's operator (deferrable, cancels the job on timeout or kill), returning the job id after a
    deferred run too, and failing with a message that names the connection and the job."""

    def __init__(self, *, connection_variable: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connection_variable = connection_variable

    def execute(self, context: Any) -> Any:
        try:
            # The provider returns None when the job already succeeded at submit; the job id is still known.
            return super().execute(context) or getattr(self, "job_id", None)
        except AirflowException as exc:
            self._record_failure(context)
            job = getattr(self, "job_id", None)
            where = f"{self.connection_variable} (job {job})" if job else self.connection_variable
            raise AirflowException(f"Airbyte sync of {where} failed: {exc}") from exc

    def _record_failure(self, context: Any, job_id: int | None = None) -> None:
        """Failed, cancelled and timed-out jobs go to the audit table too; never mask the original error."""
        job_id = job_id or getattr(self, "job_id", None)
        if not job_id:
            return
        try:
            store_airbyte_job(self.connection_variable, int(job_id), context["run_id"])
        except Exception:  # the sync's own failure is what the task must report
            self.log.warning("could not record Airbyte job %s in crm_audit.airbyte_jobs", job_id, exc_info=True)

    def execute_complete(self, context: Any, event: Any = None) -> Any:
        try:
            super().execute_complete(context, event)
        except RuntimeError as exc:
            self._record_failure(context, event.get("job_id"))
            raise AirflowException(
                f"Airbyte sync of {self.connection_variable} (job {event.get('job_id')}) "
                f"ended {event.get('status')}: {exc}"
            ) from exc
        return event.get("job_id")


@task.branch
def route_connection(variable: str, airbyte_task_id: str, simulator_task_ids: list[str]) -> list[str]:
    """Airbyte when the connection's Variable is set, the local simulator otherwise."""
    connection_id = Variable.get(variable, default="").strip()
    return [airbyte_task_id] if connection_id else simulator_task_ids


def store_airbyte_job(variable: str, job_id: int, run_id: str) -> None:
    """Record a job's final state (id, status, rows, bytes, duration) in ``crm_audit.airbyte_jobs``."""
    from airflow.providers.airbyte.hooks.airbyte import AirbyteHook

    from crm_pipeline.warehouse.ddl import run_ddl, split_script
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    specs = connection_groups()[variable]
    job = AirbyteHook(airbyte_conn_id=AIRBYTE_CONN_ID).get_job_details(int(job_id))
    with connect(task_warehouse_url()) as conn:
        run_ddl(conn, split_script(JOBS_DDL))
        conn.execute(
            "insert into crm_audit.airbyte_jobs (job_id, connection_variable, connection_id, streams, status,"
            " rows_synced, bytes_synced, duration, started_at, run_id) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " on conflict (job_id) do update set status = excluded.status, rows_synced = excluded.rows_synced,"
            " bytes_synced = excluded.bytes_synced, duration = excluded.duration",
            (
                job.job_id,
                variable,
                job.connection_id,
                [s.key for s in specs],
                str(job.status.value),
                job.rows_synced,
                job.bytes_synced,
                job.duration,
                job.start_time,
                run_id,
            ),
        )


@task(pool="warehouse")
def record_airbyte_job(variable: str, job_id: int) -> dict[str, dict[str, Any]]:
    """Record the succeeded job and hand each stream's batch (the job id is its ``sync_id``) to the gates."""
    store_airbyte_job(variable, int(job_id), get_current_context()["run_id"])
    return {
        s.key: {"stream": s.key, "sync_id": int(job_id), "source": "airbyte"} for s in connection_groups()[variable]
    }


@task(trigger_rule="none_failed_min_one_success")
def collect_batches(variable: str, airbyte_job_task_id: str, simulator_task_ids: list[str]) -> dict[str, Any]:
    """The batches of one connection, from whichever path ran: ``{stream key: {"sync_id": ...}}``."""
    ti = get_current_context()["ti"]
    batches: dict[str, Any] = dict(ti.xcom_pull(task_ids=airbyte_job_task_id) or {})
    for task_id in simulator_task_ids:
        summary = ti.xcom_pull(task_ids=task_id)
        if summary:
            batches[summary["stream"]] = summary
    if not batches:
        raise AirflowException(f"no batch arrived for connection {variable}")
    return batches
