"""The Airbyte path with the real provider (apache-airflow-providers-airbyte, airbyte-api) against the API double:
failures, timeouts and kills.

The double follows Airbyte's public API on loopback and performs each sync with the CRM simulator, stamping its
job id as ``_airbyte_meta.sync_id`` as Airbyte does. The provider's operator runs deferrable, as in production. A
whole pipeline pass through Airbyte is the first pass of ``test_pipeline_end_to_end.py``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from airflow.providers.airbyte.hooks.airbyte import AirbyteHook
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.orchestration import airbyte_preflight
from crm_pipeline.orchestration.airbyte import AIRBYTE_CONN_ID, CrmAirbyteSyncOperator, _preflight, ended_jobs
from crm_pipeline.orchestration.airbyte_trigger import CancellingAirbyteSyncTrigger
from crm_pipeline.orchestration.extract import extract_dag_id
from crm_pipeline.quality.unjudged import unjudged_sync_ids
from crm_pipeline.sources.airbyte_double import DESTINATION_ID, AirbyteDouble
from crm_pipeline.warehouse import transform_lease as lease
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration

CONNECTION_ID = "9f6a1c1e-5b1f-4c7e-9d51-4a2b8c0d0001"
VARIABLE = "airbyte_connection_hubspot_hourly"  # HubSpot's hourly streams (deals, engagements, deals_archived)
# how failure messages name the connection
NAMES = f"{VARIABLE} (streams hubspot.deals, hubspot.engagements, hubspot.deals_archived)"
EXTRACT_DAG = extract_dag_id("hourly")
TASK = f"airbyte_sync[{VARIABLE}]"


@pytest.fixture
def airbyte(warehouse: WarehouseUrl) -> Iterator[AirbyteDouble]:
    hubspot = [s for s in default_catalogue().enabled() if s.airbyte_connection.variable == VARIABLE]
    # A client id of its own: airbyte-api caches bearer tokens per client for the whole process.
    client_id = f"crm-pipeline-{uuid.uuid4().hex[:8]}"
    connections = {CONNECTION_ID: hubspot}
    with AirbyteDouble(
        warehouse, connections, client_id=client_id, client_secret="s3cr3t-value", seed=3, scale="XS"
    ) as double:
        yield double


def _variables() -> dict[str, str]:
    return {"crm_simulator_seed": "3", "crm_simulator_scale": "XS", "crm_simulator_faults": "", VARIABLE: CONNECTION_ID}


def _airbyte_conn(double: AirbyteDouble) -> str:
    return json.dumps(
        {"conn_type": "airbyte", "host": double.url, "login": double.client_id, "password": double.client_secret}
    )


def _run_operator(airbyte: AirbyteDouble, **operator_args: Any) -> Any:
    """Run the mapped Airbyte task's operator as Airflow's task runner does: ``execute``, then when it defers,
    its trigger in an event loop and ``execute_complete`` with the event. The trigger polls every 0.2 s instead of
    60 s; everything else is the provider's code talking HTTP to the double."""
    operator = CrmAirbyteSyncOperator(
        task_id="airbyte_sync",
        connection_variable=VARIABLE,
        connection_id=CONNECTION_ID,
        airbyte_conn_id=AIRBYTE_CONN_ID,
        deferrable=True,
        **operator_args,
    )
    context = {"run_id": "manual__test", "dag": SimpleNamespace(dag_id=EXTRACT_DAG)}
    try:
        return operator.execute(context)
    except TaskDeferred as deferred:
        trigger = deferred.trigger
        assert isinstance(trigger, CancellingAirbyteSyncTrigger), "deferred tasks cancel their job when killed"
        trigger.poll_interval, trigger.read_timeout = 0.2, 1.0
        event = asyncio.run(_first_event(trigger))
        return getattr(operator, deferred.method_name)(context, event)


async def _first_event(trigger: CancellingAirbyteSyncTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return event.payload
    raise AssertionError("the trigger ended without an event")


@pytest.fixture
def task_env(local_airflow, warehouse, airbyte, monkeypatch) -> None:
    """What a worker has: the Airflow connections (warehouse and Airbyte) in its environment."""
    for key, value in local_airflow.env(warehouse, _variables()).items():
        if key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_")):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW_CONN_AIRBYTE_DEFAULT", _airbyte_conn(airbyte))


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("fail", f"Airbyte sync of {NAMES}, job 1000, ended error: Job run 1000 has failed (status failed)"),
        ("unauthorized", f"Airbyte sync of {NAMES} failed: Unexpected status code 401"),
        ("unknown_status", f"Airbyte sync of {NAMES}, job 1000, ended error: Response validation"),
        ("hang", f"Airbyte sync of {NAMES}, job 1000, ended error: Job run 1000 has not reached a terminal status"),
    ],
)
def test_failed_unauthorised_unknown_and_hung_jobs_fail_the_task_clearly(
    airbyte, task_env, warehouse, caplog, mode, expected
) -> None:
    """A job fails later, seen by a status read (never in the POST's answer). A status read that hangs is retried
    under the same job until the wait ends: no second job."""
    airbyte.mode = mode
    with pytest.raises(AirflowException) as failure:
        _run_operator(airbyte, timeout=4)
    assert len(airbyte.jobs) <= 1, "never a second job"
    assert expected in str(failure.value)
    assert airbyte.client_secret not in str(failure.value) + caplog.text, "the client secret never reaches the logs"
    with psycopg.connect(warehouse.libpq()) as conn:
        assert lease.live_writes(conn) == [], "a failed job lands nothing to judge: no transform may wait for it"
    if mode == "fail":
        with psycopg.connect(warehouse.libpq()) as conn:
            audited = conn.execute("select job_id, status from crm_audit.airbyte_jobs").fetchall()
        assert audited == [(1000, "failed")], "failed jobs are audited too"


def test_timeout_cancels_the_airbyte_job(airbyte, task_env) -> None:
    airbyte.mode = "pending"
    with pytest.raises(AirflowException, match="job 1000, ended timeout: Job run 1000 has reached execution timeout"):
        _run_operator(airbyte, execution_timeout=timedelta(seconds=2))
    (job_id,) = airbyte.jobs
    assert ("DELETE", f"/v1/jobs/{job_id}") in airbyte.requests
    assert airbyte.jobs[job_id].status == "cancelled"


def test_killing_the_running_task_cancels_the_job(airbyte, task_env) -> None:
    """A task killed while it waits in its worker (not deferred) cancels its Airbyte job through on_kill."""
    airbyte.mode = "pending"
    operator = CrmAirbyteSyncOperator(
        task_id="airbyte__test",
        connection_variable=VARIABLE,
        connection_id=CONNECTION_ID,
        airbyte_conn_id=AIRBYTE_CONN_ID,
    )
    operator.job_id = AirbyteHook(airbyte_conn_id=AIRBYTE_CONN_ID).submit_sync_connection(CONNECTION_ID).job_id
    operator.on_kill()
    assert ("DELETE", f"/v1/jobs/{operator.job_id}") in airbyte.requests
    assert airbyte.jobs[operator.job_id].status == "cancelled"


def test_killing_the_deferred_task_cancels_the_job(airbyte, task_env, warehouse) -> None:
    """The triggerer calls ``on_kill`` when a person marks a deferred task failed or clears it (the real
    triggerer doing so is shown in test_local_airflow_cluster); the trigger it rebuilds from its serialised form
    cancels the job and ends the job's raw write registration, so no transform waits for it."""
    airbyte.mode = "pending"
    job_id = AirbyteHook(airbyte_conn_id=AIRBYTE_CONN_ID).submit_sync_connection(CONNECTION_ID).job_id
    holder = f"{EXTRACT_DAG}/manual__test"
    with psycopg.connect(warehouse.libpq()) as conn:
        lease.begin_write(conn, holder, ["hubspot.deals"], expires_in=timedelta(hours=1), on_session=False)
    classpath, kwargs = CancellingAirbyteSyncTrigger(
        job_id=job_id,
        conn_id=AIRBYTE_CONN_ID,
        end_time=time.time() + 60,
        poll_interval=60,
        raw_write=(holder, ["hubspot.deals", "hubspot.engagements"]),
    ).serialize()
    module, _, name = classpath.rpartition(".")
    trigger = getattr(importlib.import_module(module), name)(**kwargs)
    asyncio.run(trigger.on_kill())
    assert ("DELETE", f"/v1/jobs/{job_id}") in airbyte.requests
    assert airbyte.jobs[job_id].status == "cancelled"
    with psycopg.connect(warehouse.libpq()) as conn:
        assert lease.live_writes(conn) == []


def _registered(warehouse: WarehouseUrl) -> str:
    holder = f"{EXTRACT_DAG}/manual__test"
    with psycopg.connect(warehouse.libpq()) as conn:
        lease.begin_write(conn, holder, ["hubspot.deals"], expires_in=timedelta(hours=1), on_session=False)
        assert lease.live_writes(conn) != []
    return holder


def _unreachable(airbyte: AirbyteDouble, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the Airbyte connection at a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = SimpleNamespace(url=f"http://127.0.0.1:{port}/v1", client_id=airbyte.client_id, client_secret="x")
    monkeypatch.setenv("AIRFLOW_CONN_AIRBYTE_DEFAULT", _airbyte_conn(dead))  # type: ignore[arg-type]


def test_a_kill_ends_the_raw_write_registration_whatever_airbyte_answers(
    airbyte, task_env, warehouse, monkeypatch
) -> None:
    """Killed before its job exists, or while Airbyte refuses it: the task ends its registration all the same, or a
    transform would wait for a batch that never comes until the registration lapses (hours)."""
    operator = CrmAirbyteSyncOperator(
        task_id="airbyte__test",
        connection_variable=VARIABLE,
        connection_id=CONNECTION_ID,
        airbyte_conn_id=AIRBYTE_CONN_ID,
    )
    operator.raw_write_holder = _registered(warehouse)
    operator.on_kill()  # no job yet: nothing to cancel, nothing asked of Airbyte
    assert not any(method == "DELETE" for method, _ in airbyte.requests)
    with psycopg.connect(warehouse.libpq()) as conn:
        assert lease.live_writes(conn) == []

    operator.raw_write_holder = _registered(warehouse)
    operator.job_id = AirbyteHook(airbyte_conn_id=AIRBYTE_CONN_ID).submit_sync_connection(CONNECTION_ID).job_id
    _unreachable(airbyte, monkeypatch)
    with pytest.raises(AirflowException):
        operator.on_kill()
    with psycopg.connect(warehouse.libpq()) as conn:
        assert lease.live_writes(conn) == []


def test_a_deferred_kill_ends_the_registration_when_the_cancel_fails(airbyte, task_env, warehouse, monkeypatch) -> None:
    job_id = AirbyteHook(airbyte_conn_id=AIRBYTE_CONN_ID).submit_sync_connection(CONNECTION_ID).job_id
    holder = _registered(warehouse)
    trigger = CancellingAirbyteSyncTrigger(
        job_id=job_id,
        conn_id=AIRBYTE_CONN_ID,
        end_time=time.time() + 60,
        poll_interval=60,
        raw_write=(holder, ["hubspot.deals", "hubspot.engagements"]),
    )
    _unreachable(airbyte, monkeypatch)
    with pytest.raises(AirflowException):
        asyncio.run(trigger.on_kill())
    with psycopg.connect(warehouse.libpq()) as conn:
        assert lease.live_writes(conn) == []


def _wait_until_ended(airbyte: AirbyteDouble, job_id: int) -> None:
    deadline = time.time() + 120
    while airbyte.jobs[job_id].status in ("pending", "queued", "running"):
        assert time.time() < deadline, f"job {job_id} still {airbyte.jobs[job_id].status}"
        time.sleep(0.1)


def test_batches_of_jobs_that_ended_are_judged_and_those_still_running_wait(airbyte, task_env, warehouse) -> None:
    """The gate's sweep (``quality/unjudged.py``) asks Airbyte, through the provider, how each job it found in raw
    ended: a succeeded job started outside Airflow and a job that failed after its first stream's rows landed are
    judged; a job still pending waits for a later run; a job Airbyte does not know (404) is judged too."""
    hook = AirbyteHook(airbyte_conn_id=AIRBYTE_CONN_ID)
    airbyte.mode = "fail_after_load"
    failed = int(hook.submit_sync_connection(CONNECTION_ID).job_id)
    _wait_until_ended(airbyte, failed)
    airbyte.mode = "ok"
    clicked = int(hook.submit_sync_connection(CONNECTION_ID).job_id)  # "Sync now", outside Airflow
    _wait_until_ended(airbyte, clicked)
    airbyte.mode = "pending"
    pending = int(hook.submit_sync_connection(CONNECTION_ID).job_id)
    assert (airbyte.jobs[failed].status, airbyte.jobs[clicked].status) == ("failed", "succeeded")

    catalogue = default_catalogue()
    with psycopg.connect(warehouse.libpq()) as conn:
        deals = unjudged_sync_ids(conn, catalogue.get("hubspot.deals"))
        engagements = unjudged_sync_ids(conn, catalogue.get("hubspot.engagements"))
    assert deals[0] == failed, "the failed job's deals (the connection's first stream) landed before it failed"
    assert engagements == [clicked], "the failed job wrote no engagements; the clicked one did"
    ended, waiting = ended_jobs("hubspot.deals", [failed, clicked, pending, 424242])
    assert ended == [failed, clicked, 424242]
    assert waiting == {pending: "pending"}

    airbyte.release(pending)
    _wait_until_ended(airbyte, pending)
    airbyte.mode = "flaky"  # a job whose first status read answers 503: read again, not fail the gate
    late = int(hook.submit_sync_connection(CONNECTION_ID).job_id)
    _wait_until_ended(airbyte, late)
    assert ended_jobs("hubspot.deals", [late]) == ([late], {})
    assert airbyte.jobs[late].reads == 2, "the 503 was read again"


def _recorded(warehouse: WarehouseUrl) -> list[tuple[Any, ...]]:
    with psycopg.connect(warehouse.libpq()) as conn:
        return conn.execute("select job_id, status, api_events from crm_audit.airbyte_jobs order by job_id").fetchall()


@pytest.mark.parametrize("mode", ["queued", "incomplete"])
def test_queued_and_incomplete_jobs_keep_waiting_until_they_succeed(airbyte, task_env, warehouse, mode) -> None:
    """The platform queues jobs when its workers are busy, and shows ``incomplete`` while a failed attempt is tried
    again: both are waiting states (the provider's own trigger fails the task on ``queued`` and leaves the job)."""
    airbyte.mode = mode
    batches = _run_operator(airbyte, timeout=120)
    ((job_id, job),) = airbyte.jobs.items()
    assert job.status == "succeeded" and job.reads > 2
    assert {batch["sync_id"] for batch in batches.values()} == {job_id}
    assert _recorded(warehouse) == [(job_id, "succeeded", [])]


def test_a_sync_submitted_while_its_connection_runs_a_job_attaches_to_it(airbyte, task_env, warehouse) -> None:
    """A retry after a hang, or a job someone started in Airbyte: the API answers the second submit 409
    (``try-again-later``). The task finds the connection's running job and waits for it; no second job."""
    airbyte.mode = "pending"
    running = int(AirbyteHook(airbyte_conn_id=AIRBYTE_CONN_ID).submit_sync_connection(CONNECTION_ID).job_id)
    airbyte.mode = "ok"
    releasing = threading.Timer(1.0, airbyte.release, args=(running,))
    releasing.start()
    try:
        batches = _run_operator(airbyte, timeout=120)
    finally:
        releasing.cancel()
    assert list(airbyte.jobs) == [running], "no second job"
    assert {batch["sync_id"] for batch in batches.values()} == {running}
    assert any(m == "GET" and p.startswith(f"/v1/jobs?connectionId={CONNECTION_ID}&") for m, p in airbyte.requests)
    ((job_id, status, events),) = _recorded(warehouse)
    assert (job_id, status) == (running, "succeeded")
    assert [e["submit"] for e in events] == ["409: attached to the connection's running job"]


@pytest.mark.parametrize(("mode", "errors"), [("flaky", ["HTTP 503", "ReadTimeout"]), ("expire_token", ["HTTP 401"])])
def test_failed_status_reads_are_retried_under_the_same_job(airbyte, task_env, warehouse, mode, errors) -> None:
    """A 503, a read that outlasts its timeout, a token revoked mid-job (the SDK drops it on 401 and fetches a new
    one): each read is retried with backoff, the job keeps its id, and the retries are recorded with the job."""
    airbyte.mode = mode
    batches = _run_operator(airbyte, timeout=120)
    ((job_id, job),) = airbyte.jobs.items()
    assert job.status == "succeeded"
    assert {batch["sync_id"] for batch in batches.values()} == {job_id}
    ((_, status, events),) = _recorded(warehouse)
    assert status == "succeeded" and [e["error"] for e in events] == errors
    if mode == "expire_token":
        assert [m for m, path in airbyte.requests if path == "/v1/applications/token"] == ["POST", "POST"]


def test_a_cancel_that_meets_an_ended_job_is_recorded_not_raised(airbyte, task_env, warehouse) -> None:
    """The execution timeout cancels the job, which ends just then: Airbyte answers the cancel 409
    (``state-conflict``). The task fails for its timeout, not for the cancel, and the job's record says so."""
    airbyte.mode = "pending"
    switching = threading.Timer(1.0, setattr, args=(airbyte, "mode", "ends_on_cancel"))
    switching.start()
    with pytest.raises(AirflowException, match="ended timeout"):
        _run_operator(airbyte, execution_timeout=timedelta(seconds=2))
    ((job_id, job),) = airbyte.jobs.items()
    assert ("DELETE", f"/v1/jobs/{job_id}") in airbyte.requests and job.status == "succeeded"
    ((_, status, events),) = _recorded(warehouse)
    assert status == "succeeded" and [e.get("cancel") for e in events] == ["already ended"]


def test_airflows_connection_test_reaches_the_health_endpoint(airbyte, task_env) -> None:
    """The Airflow UI's "Test" button on the Airbyte connection calls ``GET /v1/health`` (no authentication)."""
    assert AirbyteHook(airbyte_conn_id=AIRBYTE_CONN_ID).test_connection() == (True, "Connection successfully tested")
    assert ("GET", "/v1/health") in airbyte.requests


def test_the_preflight_passes_a_connection_set_up_as_documented_and_names_each_difference(airbyte, task_env) -> None:
    """The connection as Airbyte holds it (``GET /v1/connections/{id}``, read through the SDK) against the
    catalogue: one line per difference, naming the Variable, the connection, the stream and the field."""
    specs = [s for s in default_catalogue().enabled() if s.airbyte_connection.variable == VARIABLE]
    hook = AirbyteHook(airbyte_conn_id=AIRBYTE_CONN_ID)
    assert airbyte_preflight.problems(hook, VARIABLE, CONNECTION_ID, specs, airbyte.warehouse.database) == []
    airbyte.connection_changes[CONNECTION_ID] = {
        "prefix": "hs_",
        "schedule_type": "cron",
        "namespace_format": "public",
        "streams": {
            "deals": {"sync_mode": "incremental_append", "cursor_field": ["hs_lastmodifieddate"]},
            "engagements": None,
            "tickets": {"sync_mode": "incremental_append"},
        },
    }
    with pytest.raises(AirflowFailException, match="holds 'hubspot-hourly', which is not an Airbyte connection id"):
        _preflight({VARIABLE: "hubspot-hourly"}, {VARIABLE: specs})
    where = f"{VARIABLE} (Airbyte connection {CONNECTION_ID})"
    assert airbyte_preflight.problems(hook, VARIABLE, CONNECTION_ID, specs) == [
        f"{where}: schedule type is 'cron', the catalogue needs 'manual'",
        f"{where}: namespace format is 'public', the catalogue needs 'raw_hubspot'",
        f"{where}: stream prefix is 'hs_', the catalogue needs ''",
        f"{where}: stream hubspot.deals: sync mode is 'incremental_append', the catalogue needs"
        " 'incremental_deduped_history'",
        f"{where}: stream hubspot.deals: cursor field is ['hs_lastmodifieddate'], the catalogue needs ['updatedAt']",
        f"{where}: stream hubspot.engagements is not selected in the connection",
        f"{where}: stream 'tickets' is selected in the connection but not declared in the catalogue",
    ]


def test_every_body_the_double_sends_is_one_the_sdk_reads_as_the_spec_defines_it(airbyte) -> None:
    """The double's answers parse as the SDK's own models, strictly: job, job list, connection, and the destination
    once the ``destinationType`` the server strips is put back; errors are Problem JSON (``api-problems.yaml``)."""
    import httpx
    from airbyte_api import models

    token = httpx.post(
        f"{airbyte.url}/applications/token",
        data={"grant_type": "client_credentials", "client_id": airbyte.client_id, "client_secret": "s3cr3t-value"},
    ).json()
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    airbyte.mode = "pending"
    created = httpx.post(f"{airbyte.url}/jobs", json={"connectionId": CONNECTION_ID, "jobType": "sync"}, headers=auth)
    job = models.JobResponse.model_validate_json(created.text, strict=True)
    assert (job.status, job.duration, job.last_updated_at) == (models.JobStatusEnum.PENDING, None, None)
    conflict = httpx.post(f"{airbyte.url}/jobs", json={"connectionId": CONNECTION_ID, "jobType": "sync"}, headers=auth)
    assert conflict.status_code == 409 and conflict.json()["type"].endswith("#try-again-later")
    assert {"type", "title", "status", "detail"} <= set(conflict.json())
    listed = httpx.get(f"{airbyte.url}/jobs", params={"connectionId": CONNECTION_ID}, headers=auth).text
    assert [j.job_id for j in models.JobsResponse.model_validate_json(listed, strict=True).data] == [job.job_id]
    connection = httpx.get(f"{airbyte.url}/connections/{CONNECTION_ID}", headers=auth).text
    assert models.ConnectionResponse.model_validate_json(connection, strict=True).destination_id == DESTINATION_ID
    destination = httpx.get(f"{airbyte.url}/destinations/{DESTINATION_ID}", headers=auth).json()
    stored = destination["configuration"]
    assert "destinationType" not in stored and set(stored["password"]) == {"*"}, "stripped and masked"
    config = {**stored, "destinationType": destination["destinationType"]}
    parsed = models.DestinationResponse.model_validate_json(json.dumps({**destination, "configuration": config}))
    assert isinstance(parsed.configuration, models.DestinationPostgres)
    assert parsed.configuration.database == airbyte.warehouse.database
    assert httpx.get(f"{airbyte.url}/jobs/{job.job_id}").status_code == 401, "every call but the token needs it"
    assert httpx.get(f"{airbyte.url}/connections/not-a-uuid", headers=auth).status_code == 400


def test_the_preflight_reads_the_destination_as_the_server_sends_it(airbyte, task_env) -> None:
    """The destination (``GET /v1/destinations/{id}``) comes back without ``destinationType`` in its configuration,
    which the SDK's model refuses: the preflight reads the body as sent and names what the raw layer cannot use."""
    from airbyte_api import api, errors

    hook = AirbyteHook(airbyte_conn_id=AIRBYTE_CONN_ID)
    with pytest.raises(errors.ResponseValidationError):  # the SDK alone cannot read what the server sends
        hook.airbyte_api.destinations.get_destination(request=api.GetDestinationRequest(destination_id=DESTINATION_ID))
    specs = [s for s in default_catalogue().enabled() if s.airbyte_connection.variable == VARIABLE]
    named = f"{VARIABLE} (Airbyte connection {CONNECTION_ID}): destination {DESTINATION_ID}"
    airbyte.destination_changes = {"disable_type_dedupe": True, "database": "analytics"}
    assert airbyte_preflight.problems(hook, VARIABLE, CONNECTION_ID, specs, airbyte.warehouse.database) == [
        f"{named}: disable_type_dedupe is true (raw JSON only), the raw layer needs final tables",
        f"{named}: database is 'analytics', the warehouse is {airbyte.warehouse.database!r}",
    ]
    airbyte.destination_changes = {"destinationType": "snowflake"}
    assert airbyte_preflight.problems(hook, VARIABLE, CONNECTION_ID, specs, airbyte.warehouse.database) == [
        f"{named} is 'snowflake', the raw layer needs 'postgres'"
    ]
    airbyte.destination_changes = {}
    _preflight({VARIABLE: CONNECTION_ID}, {VARIABLE: specs})  # the loader's connection names the same database


def test_a_mismatched_connection_fails_the_run_before_any_job(local_airflow, warehouse, airbyte) -> None:
    """Real ``airflow dags test``: the extract run's first task reads the connection, finds a stream prefix the
    raw layer does not use, and fails naming it; Airbyte never gets a job."""
    airbyte.connection_changes[CONNECTION_ID] = {"prefix": "hs_"}
    env = {"AIRFLOW_CONN_AIRBYTE_DEFAULT": _airbyte_conn(airbyte)}
    run = local_airflow.dags_test(EXTRACT_DAG, warehouse, env, conf={"streams": ["hubspot.deals"]}, **_variables())
    assert run.returncode != 0
    assert local_airflow.task_states(EXTRACT_DAG, run.run_id)["plan"] == "failed"
    assert f"{VARIABLE} (Airbyte connection {CONNECTION_ID}): stream prefix is 'hs_'" in run.log
    assert airbyte.jobs == {}, "no job was submitted"


def test_the_check_command_reports_every_connection_as_airflow_sees_it(local_airflow, warehouse, airbyte) -> None:
    """``crm airbyte check`` runs this module in Airflow's environment: the Variables and the ``airbyte_default``
    connection read as Airflow reads them, every connection of the catalogue checked at once, exit 1 on a problem."""
    env = {**local_airflow.env(warehouse, _variables()), "AIRFLOW_CONN_AIRBYTE_DEFAULT": _airbyte_conn(airbyte)}

    def check(**changes: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "crm_pipeline.orchestration.airbyte_check"]
        return subprocess.run(command, env={**env, **changes}, capture_output=True, text=True, timeout=300, check=False)

    fine = check()
    assert fine.returncode == 0, fine.stdout + fine.stderr
    assert f"ok    {VARIABLE}: Airbyte connection {CONNECTION_ID} matches the catalogue" in fine.stdout
    assert "ok    airbyte_connection_salesforce_daily: salesforce.Account" in fine.stdout, "simulated in this mode"

    airbyte.connection_changes[CONNECTION_ID] = {"prefix": "hs_"}
    wrong = check(CRM_SOURCE_MODE="airbyte")
    assert wrong.returncode == 1
    assert f"FAIL  {VARIABLE} (Airbyte connection {CONNECTION_ID}): stream prefix is 'hs_'" in wrong.stdout
    assert "FAIL  airbyte_connection_salesforce_daily is empty: salesforce.Account" in wrong.stdout
    assert not airbyte.jobs, "a check submits nothing"

    env.pop("AIRFLOW_CONN_CRM_WAREHOUSE_LOADER")  # the destination's database is compared with this connection's
    unreadable = check()
    assert unreadable.returncode == 1 and "FAIL  Airflow connection 'crm_warehouse_loader' cannot be read" in (
        unreadable.stdout
    ), unreadable.stdout + unreadable.stderr[-2000:]
