"""The Airbyte path with the real provider (apache-airflow-providers-airbyte, airbyte-api) against the API double.

The double follows Airbyte's public API on loopback and performs each sync with the CRM simulator, stamping its
job id as ``_airbyte_meta.sync_id`` as Airbyte does. The provider's operator runs deferrable, as in production.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import psycopg
import pytest
from conftest import VENV_BIN

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.sources.airbyte_double import AirbyteDouble
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration

CONNECTION_ID = "9f6a1c1e-5b1f-4c7e-9d51-hubspot00001"
TASK = "extract.airbyte__airbyte_connection_hubspot"


@pytest.fixture
def airbyte(warehouse: WarehouseUrl) -> Iterator[AirbyteDouble]:
    hubspot = [
        s for s in default_catalogue().enabled() if s.airbyte_connection.variable == "airbyte_connection_hubspot"
    ]
    with AirbyteDouble(
        warehouse, {CONNECTION_ID: hubspot}, client_id="crm-pipeline", client_secret="s3cr3t-value", seed=3, scale="XS"
    ) as double:
        yield double


def _variables() -> dict[str, str]:
    return {
        "crm_simulator_seed": "3",
        "crm_simulator_scale": "XS",
        "crm_simulator_faults": "",
        "airbyte_connection_hubspot": CONNECTION_ID,
        "airbyte_connection_salesforce": "",
    }


def _airbyte_conn(double: AirbyteDouble) -> str:
    return json.dumps(
        {"conn_type": "airbyte", "host": double.url, "login": double.client_id, "password": double.client_secret}
    )


def _run_task(local_airflow, warehouse, double: AirbyteDouble, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = local_airflow.env(warehouse, _variables())
    full_env.update({"AIRFLOW_CONN_AIRBYTE_DEFAULT": _airbyte_conn(double), **env})
    return subprocess.run(
        [str(VENV_BIN / "airflow"), "tasks", "test", "crm_elt", TASK],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_connection_syncs_through_airbyte_and_its_rows_are_gated(local_airflow, warehouse, airbyte) -> None:
    env_extra = {"AIRFLOW_CONN_AIRBYTE_DEFAULT": _airbyte_conn(airbyte)}
    run = local_airflow.dags_test("crm_elt", warehouse, extra_env=env_extra, **_variables())
    assert run.returncode == 0, run.log[-5000:]

    states = local_airflow.task_states("crm_elt", run.run_id)
    assert states[TASK] == "success"
    assert states["extract.sync__hubspot__contacts"] == "skipped", "Airbyte replaced the simulator for HubSpot"
    assert states["extract.sync__salesforce__Account"] == "success", "Salesforce has no connection: simulator"
    assert states["extract.gate__hubspot__contacts"] == "success"
    assert states["audit_marts"] == "success"

    (job_id,) = airbyte.jobs
    assert airbyte.jobs[job_id].status == "succeeded"
    with psycopg.connect(warehouse.libpq()) as conn:
        sync_ids = conn.execute("select distinct (_airbyte_meta->>'sync_id')::bigint from raw_hubspot.contacts")
        assert [row[0] for row in sync_ids] == [job_id]
        audit = conn.execute(
            "select status, rows_synced, connection_id, streams from crm_audit.airbyte_jobs"
        ).fetchall()
        assert audit == [
            (
                "succeeded",
                airbyte.jobs[job_id].rows,
                CONNECTION_ID,
                [s.key for s in default_catalogue().by_source("hubspot")],
            )
        ]
        assert conn.execute("select count(*) from marts.dim_contacts").fetchone()[0] > 0  # type: ignore[index]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("fail", "Airbyte sync of airbyte_connection_hubspot (job 1000) failed: Job failed"),
        ("unauthorized", "Airbyte sync of airbyte_connection_hubspot failed: Unexpected status code 401"),
        ("unknown_status", "Airbyte sync of airbyte_connection_hubspot (job 1000) ended error: Response validation"),
        ("hang", "Airbyte sync of airbyte_connection_hubspot (job 1000) ended error: timed out"),
    ],
)
def test_failed_unauthorised_unknown_and_hung_jobs_fail_the_task_clearly(
    local_airflow, warehouse, airbyte, mode, expected
) -> None:
    airbyte.mode = mode
    result = _run_task(local_airflow, warehouse, airbyte)
    output = result.stdout + result.stderr
    # `airflow tasks test` exits 0 whatever the task did; the task's own end state is in its log.
    assert "new_state=up_for_retry" in output, output[-3000:]
    assert expected in output
    assert airbyte.client_secret not in output, "the client secret never reaches the logs"


def test_timeout_cancels_the_airbyte_job(local_airflow, warehouse, airbyte) -> None:
    airbyte.mode = "pending"
    result = _run_task(local_airflow, warehouse, airbyte, CRM_AIRBYTE_SYNC_TIMEOUT_MINUTES="0.2")
    output = result.stdout + result.stderr
    assert "new_state=up_for_retry" in output, output[-3000:]
    assert "ended timeout: Job run 1000 has reached execution timeout" in output
    (job_id,) = airbyte.jobs
    assert ("DELETE", f"/v1/jobs/{job_id}") in airbyte.requests
    assert airbyte.jobs[job_id].status == "cancelled"


def test_killing_the_running_task_cancels_the_job(airbyte, monkeypatch) -> None:
    """A task killed while it waits in its worker (not deferred) cancels its Airbyte job through on_kill."""
    from airflow.providers.airbyte.hooks.airbyte import AirbyteHook

    from crm_pipeline.orchestration.airbyte import AIRBYTE_CONN_ID, CrmAirbyteSyncOperator

    airbyte.mode = "pending"
    monkeypatch.setenv("AIRFLOW_CONN_AIRBYTE_DEFAULT", _airbyte_conn(airbyte))
    operator = CrmAirbyteSyncOperator(
        task_id="airbyte__test",
        connection_variable="airbyte_connection_hubspot",
        connection_id=CONNECTION_ID,
        airbyte_conn_id=AIRBYTE_CONN_ID,
    )
    operator.job_id = AirbyteHook(airbyte_conn_id=AIRBYTE_CONN_ID).submit_sync_connection(CONNECTION_ID).job_id
    operator.on_kill()
    assert ("DELETE", f"/v1/jobs/{operator.job_id}") in airbyte.requests
    assert airbyte.jobs[operator.job_id].status == "cancelled"
