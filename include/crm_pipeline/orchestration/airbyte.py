"""The Airbyte path: trigger a connection's sync through the provider, record the job, hand the batch to the gates.

Which path a connection takes is decided when the DAG runs, not when it is parsed (parsing reads no Variables):
``airbyte_connections`` maps the Airbyte task over the connections whose Variable holds a connection id, and
``simulated_streams`` maps the simulator's sync over the streams of every other connection, in simulator mode
only (``source_mode``: in Airbyte mode, the default, ``plan`` fails a run with a connection not configured).
Streams of one connection share one Airbyte job; the job id is what Airbyte stamps as ``_airbyte_meta.sync_id``, so each
stream's gate checks exactly the rows of that job.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Collection
from datetime import timedelta
from typing import Any

from airflow.providers.airbyte.hooks.airbyte import AirbyteHook
from airflow.providers.airbyte.operators.airbyte import AirbyteTriggerSyncOperator
from airflow.sdk import Variable, get_current_context, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from crm_pipeline import source_mode
from crm_pipeline.catalogue import StreamSpec, default_catalogue
from crm_pipeline.lineage import report_tables
from crm_pipeline.orchestration import airbyte_jobs
from crm_pipeline.orchestration.airbyte_jobs import ENDED
from crm_pipeline.orchestration.airbyte_trigger import CancellingAirbyteSyncTrigger
from crm_pipeline.paths import LOADER_CONN_ID

LOG = logging.getLogger(__name__)  # task logs capture it
AIRBYTE_CONN_ID = "airbyte_default"
# How long one Airbyte sync may take before its job is cancelled (read from the environment, not a Variable:
# execution_timeout is fixed when the DAG is parsed).
TIMEOUT_VARIABLE = "CRM_AIRBYTE_SYNC_TIMEOUT_MINUTES"
POLL_SECONDS = 60  # how often a deferred sync asks Airbyte for its job's status


def sync_timeout(environ: dict[str, str] | os._Environ[str] = os.environ) -> timedelta:
    """The sync timeout from the environment, checked: a typo would otherwise fail every extract DAG's import with
    ``could not convert string to float``, and 0 would time out every sync at once."""
    text = environ.get(TIMEOUT_VARIABLE, "120").strip()
    try:
        minutes = float(text)
    except ValueError:
        raise ValueError(f"{TIMEOUT_VARIABLE} must be a number of minutes, got {text!r}") from None
    if not 1 <= minutes <= 7 * 24 * 60:
        raise ValueError(f"{TIMEOUT_VARIABLE} must be between 1 and 10080 minutes (a week), got {text!r}")
    return timedelta(minutes=minutes)


SYNC_TIMEOUT = sync_timeout()

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
);
alter table crm_audit.airbyte_jobs add column if not exists api_events jsonb not null default '[]'::jsonb
"""


def connection_groups(stream_keys: Collection[str] | None = None) -> dict[str, list[StreamSpec]]:
    """Enabled streams (of ``stream_keys``, or all) grouped by the Variable that names their Airbyte connection,
    in catalogue order. The catalogue gives each connection one cadence, so one extract DAG holds all of it."""
    groups: dict[str, list[StreamSpec]] = {}
    for spec in default_catalogue().enabled():
        if stream_keys is None or spec.key in stream_keys:
            groups.setdefault(spec.airbyte_connection.variable, []).append(spec)
    return groups


class CrmAirbyteSyncOperator(AirbyteTriggerSyncOperator):
    """The provider's operator (deferrable; cancels the job on timeout, on kill, and on kill while deferred)
    that records the job in ``crm_audit.airbyte_jobs`` and returns each stream's batch for the gates, failing with
    a message that names the connection and the job."""

    def __init__(self, *, connection_variable: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.connection_variable = connection_variable
        self.raw_write_holder: str | None = None  # set by execute when the job replaces raw rows

    def execute(self, context: Any) -> dict[str, dict[str, Any]]:
        self._register_write(context)  # before the job: it may reschedule the task while a transform reads raw
        try:
            return self._submit_and_defer(context)
        except Exception as exc:  # an API error, or a misconfigured connection's ValueError
            self._record_failure(context)
            job = getattr(self, "job_id", None)
            where = f"{self._names()}, job {job}" if job else self._names()
            raise AirflowException(f"Airbyte sync of {where} failed: {exc}") from exc

    def _submit_and_defer(self, context: Any) -> dict[str, dict[str, Any]]:
        """Start the job (or attach to the connection's running one: ``airbyte_jobs.submit``) and defer until it
        ends, whatever waiting state it reports (the provider's own ``execute`` fails on ``queued``)."""
        hook = AirbyteHook(airbyte_conn_id=self.airbyte_conn_id, api_version=self.api_version)
        submitted = airbyte_jobs.submit(hook, str(self.connection_id))
        self.job_id = submitted.job_id
        events: list[dict[str, Any]] = []
        if submitted.attached:
            self.log.warning("%s already had job %s running (409): waiting for it", self._names(), self.job_id)
            events.append({"submit": "409: attached to the connection's running job", "at": time.time()})
        self.log.info("Airbyte job %s, status %s", self.job_id, submitted.status)
        if submitted.status == "succeeded":
            return self._finish(context, self.job_id, events)
        if submitted.status in ENDED:
            raise AirflowException(f"Job {self.job_id} {submitted.status}")
        now = time.time()
        execution_deadline = now + self.execution_timeout.total_seconds() if self.execution_timeout else None
        registered = (self.raw_write_holder, self._streams()) if self.raw_write_holder else None
        self.defer(
            trigger=CancellingAirbyteSyncTrigger(
                conn_id=self.airbyte_conn_id,
                job_id=self.job_id,
                end_time=now + self.timeout,
                execution_deadline=execution_deadline,
                poll_interval=POLL_SECONDS,
                raw_write=registered,
                api_events=events,
            ),
            method_name="execute_complete",
            # two polls more than the execution timeout, for the trigger's timeout event and the cancel
            timeout=self.execution_timeout + timedelta(seconds=2 * POLL_SECONDS) if self.execution_timeout else None,
        )

    def _register_write(self, context: Any) -> None:
        """A job that dedups or overwrites replaces raw rows: its streams are registered before it starts
        (``orchestration/replacing_writes.py``), and each stays registered until its gate judged the batch. A
        job that fails or is killed (``on_kill``, or the trigger's while deferred) lands nothing to judge: it
        ends the registration itself."""
        from crm_pipeline.orchestration.replacing_writes import WRITE_HOLD, register
        from crm_pipeline.warehouse.locate import connect, task_warehouse_url

        with connect(task_warehouse_url(LOADER_CONN_ID)) as conn:
            specs = connection_groups()[self.connection_variable]
            self.raw_write_holder = register(conn, specs, context, expires_in=SYNC_TIMEOUT + WRITE_HOLD)

    def _end_write(self, context: Any) -> None:
        """End the job's registration (it failed): there is no batch for a gate to judge. After a deferral this
        is a new operator object, so the holder comes from the context."""
        from crm_pipeline.orchestration.replacing_writes import end, writer_id

        end(self.raw_write_holder or writer_id(context), self._streams(), conn_id=LOADER_CONN_ID)

    def _streams(self) -> list[str]:
        return [s.key for s in connection_groups().get(self.connection_variable, [])]

    def on_kill(self) -> None:
        from crm_pipeline.orchestration.replacing_writes import end

        try:
            # With no job yet (killed while registering or submitting) there is nothing to cancel.
            if job_id := getattr(self, "job_id", None):
                hook = AirbyteHook(airbyte_conn_id=self.airbyte_conn_id, api_version=self.api_version)
                try:
                    outcome = airbyte_jobs.cancel(hook, int(job_id))
                except Exception as exc:
                    raise AirflowException(f"could not cancel Airbyte job {job_id}: {exc}") from exc
                self.log.info("on_kill: Airbyte job %s: %s", job_id, outcome)
        finally:
            # Registered by this execute, if the job replaces rows; ended even when Airbyte cannot be reached, or
            # a transform would wait for the registration until it lapses.
            end(self.raw_write_holder, self._streams(), conn_id=LOADER_CONN_ID)

    def _names(self) -> str:
        """The connection's Variable and its streams, for messages (and so for alerts)."""
        streams = ", ".join(s.key for s in connection_groups().get(self.connection_variable, []))
        return f"{self.connection_variable} (streams {streams})"

    def execute_complete(self, context: Any, event: Any = None) -> dict[str, dict[str, Any]]:
        job_id, status = int(event["job_id"]), str(event["status"])
        events = list(event.get("api_events") or [])
        if status == "timeout":  # the execution timeout: the job must not go on syncing on its own
            hook = AirbyteHook(airbyte_conn_id=self.airbyte_conn_id, api_version=self.api_version)
            try:
                events.append({"cancel": airbyte_jobs.cancel(hook, job_id), "at": time.time()})
            except Exception:
                self.log.warning("could not cancel Airbyte job %s after the timeout", job_id, exc_info=True)
        if status != "success":
            self._record_failure(context, job_id, events)
            raise AirflowException(
                f"Airbyte sync of {self._names()}, job {job_id}, ended {status}: {event.get('message')}"
            )
        return self._finish(context, job_id, events)

    def _finish(self, context: Any, job_id: int, events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Record the succeeded job; each stream's batch is the job's rows (its id is their ``sync_id``)."""
        from crm_pipeline.warehouse.locate import task_warehouse_url

        store_airbyte_job(self.connection_variable, job_id, context["run_id"], events)
        specs = connection_groups()[self.connection_variable]
        report_tables(task_warehouse_url(LOADER_CONN_ID), outputs=[(s.raw_schema, s.stream) for s in specs])
        ti = context.get("ti")
        started = ti.start_date.isoformat() if ti is not None and ti.start_date else None
        return {s.key: {"stream": s.key, "sync_id": job_id, "source": "airbyte", "started_at": started} for s in specs}

    def _record_failure(
        self, context: Any, job_id: int | None = None, events: list[dict[str, Any]] | None = None
    ) -> None:
        """Failed, cancelled and timed-out jobs go to the audit table too; never mask the original error."""
        self._end_write(context)  # never raises
        job_id = job_id or getattr(self, "job_id", None)
        if not job_id:
            return
        try:
            store_airbyte_job(self.connection_variable, int(job_id), context["run_id"], events or [])
        except Exception:  # the sync's own failure is what the task must report
            self.log.warning("could not record Airbyte job %s in crm_audit.airbyte_jobs", job_id, exc_info=True)


def configured_connections(stream_keys: Collection[str]) -> dict[str, str]:
    """``{connection variable: Airbyte connection id}`` for the streams' connections whose Variable is set."""
    ids = {variable: Variable.get(variable, default="").strip() for variable in connection_groups(stream_keys)}
    return {variable: connection_id for variable, connection_id in ids.items() if connection_id}


def selected_streams(stream_keys: list[str]) -> list[str]:
    """The DAG's streams this run syncs: the ``streams`` param when given (validated against them), else all; in
    a backfill, not the full-refresh streams. Those keep no history to deliver again (each sync replaces the whole
    table, and a backfill's copy would overwrite the table under a concurrent run's gate): their regular runs
    bring them up to date."""
    from crm_pipeline.orchestration.window import backfill_window

    context = get_current_context()
    chosen = (context.get("params") or {}).get("streams") or []
    keys = [key for key in stream_keys if not chosen or key in chosen]
    if backfill_window(context) is not None:
        catalogue = default_catalogue()
        keys = [key for key in keys if catalogue.get(key).sync_mode != "full_refresh_overwrite"]
    return keys


@task
def airbyte_connections(stream_keys: list[str]) -> list[dict[str, str]]:
    """The connections of the selected streams that sync through Airbyte this run: one mapped Airbyte task (one
    job, all of the connection's streams) each.

    Decided when the DAG runs, not when it is parsed (parsing reads no Variables).
    """
    return [
        {"connection_variable": variable, "connection_id": connection_id}
        for variable, connection_id in configured_connections(selected_streams(stream_keys)).items()
    ]


@task
def simulated_streams(stream_keys: list[str]) -> list[str]:
    """The selected streams whose connection has no Airbyte connection id: the simulator syncs them, one task each
    (in simulator mode only: in Airbyte mode ``plan`` has already failed the run for them)."""
    if source_mode.source_mode() == source_mode.AIRBYTE:
        return []
    keys = selected_streams(stream_keys)
    configured = configured_connections(keys)
    groups = connection_groups(keys)
    return [s.key for variable, specs in groups.items() if variable not in configured for s in specs]


@task.short_circuit
def plan(stream_keys: list[str]) -> bool:
    """Check the run's params together (each was validated alone when the run was created), log what the run
    will sync and how, and stop here on a dry run: every other task is skipped, nothing is written."""
    from crm_pipeline.orchestration.window import backfill_window

    context = get_current_context()
    params = context.get("params") or {}
    window = backfill_window(context)
    keys = selected_streams(stream_keys)
    configured = configured_connections(keys)
    missing = sorted(set(connection_groups(keys)) - set(configured))
    if missing and source_mode.source_mode() == source_mode.AIRBYTE:
        raise AirflowFailException(
            f"no Airbyte connection id in the Variable(s) {', '.join(missing)}: {source_mode.MODE_VARIABLE} is"
            f" {source_mode.AIRBYTE!r} (the default), so every stream syncs through Airbyte; set each Variable to its"
            f" connection's id (docs/deploy.md), or {source_mode.MODE_VARIABLE}=simulator on a development machine"
        )
    if configured:
        _preflight(configured, connection_groups(keys))
    if window is not None and configured:
        raise AirflowFailException(
            f"a backfill window applies to simulated streams only; {', '.join(sorted(configured))} sync through"
            " Airbyte, which reads from the connection's cursor: reset the stream in Airbyte instead"
        )
    for variable, specs in connection_groups(keys).items():
        how = f"Airbyte connection {configured[variable]}" if variable in configured else "the local simulator"
        LOG.info("%s: %s through %s", variable, ", ".join(s.key for s in specs), how)
    if window is not None:
        LOG.info("backfill of the window %s to %s (the streams' clocks do not move)", *window)
        if skipped := sorted(set(stream_keys) - set(keys)):
            LOG.info("not backfilled (full refresh, or not in the streams param): %s", ", ".join(skipped))
    if params.get("dry_run"):
        LOG.info("dry run: nothing is synced, gated or admitted")
        return False
    return True


def _preflight(configured: dict[str, str], groups: dict[str, list[StreamSpec]]) -> None:
    """Read each connection the run will sync and compare it with the catalogue: any difference fails the run
    here, before a job is submitted, one line each."""
    if found := connection_problems(configured, groups):
        raise AirflowFailException("the Airbyte connections differ from the catalogue:\n" + "\n".join(found))
    LOG.info("preflight: %s match the catalogue", ", ".join(sorted(configured)))


def connection_problems(configured: dict[str, str], groups: dict[str, list[StreamSpec]]) -> list[str]:
    """``{Variable: connection id}`` checked against the catalogue (``airbyte_preflight``), one line per problem:
    an id that is no UUID, a connection that cannot be read, or one (or its destination) set up differently."""
    from crm_pipeline.orchestration.airbyte_preflight import problems
    from crm_pipeline.warehouse.locate import task_warehouse_url

    hook = AirbyteHook(airbyte_conn_id=AIRBYTE_CONN_ID)
    found: list[str] = []
    database: str | None = None
    if configured:
        try:
            database = task_warehouse_url(LOADER_CONN_ID).database
        except Exception as exc:  # missing, or without a database: the destination's database cannot be compared
            found.append(f"Airflow connection {LOADER_CONN_ID!r} cannot be read: {exc}")
    for variable, connection_id in configured.items():
        try:
            uuid.UUID(connection_id)
        except ValueError:
            found.append(f"{variable} holds {connection_id!r}, which is not an Airbyte connection id (a UUID)")
            continue
        try:
            found += problems(hook, variable, connection_id, groups[variable], database)
        except Exception as exc:  # an unknown id (404), refused credentials: the connection cannot be checked
            found.append(f"{variable} (Airbyte connection {connection_id}): cannot be read: {exc}")
    return found


def ended_jobs(stream_key: str, sync_ids: list[int]) -> tuple[list[int], dict[int, str]]:
    """Of a stream's unjudged sync ids, those whose job has ended, and the others with their status. A stream the
    simulator syncs writes each batch in one transaction, so every batch it shows has ended; for a stream synced
    through Airbyte, Airbyte is asked (its jobs may still be writing: each flush commits). A job Airbyte does
    not know (404) has ended too: nothing will add to its rows."""
    if not sync_ids or not configured_connections([stream_key]):
        return sync_ids, {}

    hook = AirbyteHook(airbyte_conn_id=AIRBYTE_CONN_ID)
    ended, waiting = [], {}
    for sync_id in sync_ids:
        status = _job_status(hook, sync_id)
        if status in ENDED or status == "unknown to Airbyte":
            ended.append(sync_id)
        else:
            waiting[sync_id] = status
    return ended, waiting


def _job_status(hook: AirbyteHook, job_id: int, retries: int = 3) -> str:
    """A job's status, read as the trigger reads it: a transient failure (5xx, 429, a timeout, an expired token)
    is tried again after 1, 2, 4 s; a job Airbyte does not know (404) is "unknown to Airbyte"."""
    from airbyte_api import errors

    for attempt in range(retries + 1):
        try:
            return airbyte_jobs.read_status(hook, job_id)
        except errors.SDKError as exc:
            if exc.status_code == 404:
                return "unknown to Airbyte"
            raise
        except airbyte_jobs.TransientReadError:
            if attempt == retries:
                raise
            LOG.info("reading Airbyte job %s failed for now; trying again", job_id)
            time.sleep(2**attempt)
    return "unknown to Airbyte"  # retries < 0: nothing was read


def store_airbyte_job(variable: str, job_id: int, run_id: str, events: list[dict[str, Any]]) -> None:
    """Record a job's final state (id, status, rows, bytes, duration) in ``crm_audit.airbyte_jobs``, with what the
    API made the task do on the way (``api_events``: a 409 attach, retried reads, a cancel)."""
    from psycopg.types.json import Jsonb

    from crm_pipeline.warehouse import audit_log
    from crm_pipeline.warehouse.ddl import run_ddl, split_script
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    specs = connection_groups()[variable]
    job = AirbyteHook(airbyte_conn_id=AIRBYTE_CONN_ID).get_job_details(int(job_id))
    with connect(task_warehouse_url(LOADER_CONN_ID)) as conn:
        run_ddl(conn, split_script(JOBS_DDL))
        audit_log.ensure_audit_log(conn)
        conn.execute(
            "insert into crm_audit.airbyte_jobs (job_id, connection_variable, connection_id, streams, status,"
            " rows_synced, bytes_synced, duration, started_at, run_id, api_events)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " on conflict (job_id) do update set status = excluded.status, rows_synced = excluded.rows_synced,"
            " bytes_synced = excluded.bytes_synced, duration = excluded.duration,"
            " api_events = crm_audit.airbyte_jobs.api_events || excluded.api_events",
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
                Jsonb(events),
            ),
        )
        audit_log.record_event(
            conn,
            "load",
            variable,
            run_id=run_id,
            details={
                "source": "airbyte",
                "job_id": job.job_id,
                "status": str(job.status.value),
                "streams": [s.key for s in specs],
                "rows": job.rows_synced,
                "bytes": job.bytes_synced,
            },
        )


@task(trigger_rule="all_done")
def collect_batches(sync_task_ids: list[str]) -> dict[str, Any]:
    """Every batch that arrived, from whichever path ran: ``{stream key: {"sync_id": ...}}``.

    Runs even when some syncs failed, so one connection's outage does not hold back the others' gates; when
    every sync failed it is empty, and ``held_back`` fails the run naming the streams without a batch.
    """
    ti = get_current_context()["ti"]
    batches: dict[str, Any] = {}
    for summary in ti.xcom_pull(task_ids=sync_task_ids) or []:
        if not summary:
            continue
        if "stream" in summary:  # one simulated stream
            batches[summary["stream"]] = summary
        else:  # one Airbyte job: all its connection's streams
            batches.update(summary)
    return batches
