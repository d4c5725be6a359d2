"""`make up` starts Airflow's real components, the real scheduler runs the pipeline, `make down` stops them all.

The scheduler does what `airflow dags test` cannot: each extract DAG starts on its own schedule once unpaused, and
the transform starts because their admit tasks emitted the stream assets.

Runs in its own CRM_LOCAL_DIR (its own embedded warehouse, AIRFLOW_HOME and ports), so a developer's running
`make up` is neither used nor stopped. This is the test that caught Cosmos tasks overwriting the manifest other
tasks were parsing, which `airflow dags test` (one task at a time) cannot show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import task_states

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.local_airflow.processes import _start_time
from crm_pipeline.orchestration.extract import TRANSFORM_DAG_ID, extract_dag_id, pipeline_dag_ids
from crm_pipeline.sources.airbyte_double import AirbyteDouble
from crm_pipeline.warehouse.embedded import EmbeddedWarehouse

pytestmark = pytest.mark.integration
CRM = [sys.executable, "-m", "crm_pipeline.cli"]
CONNECTION_ID = "5d0c8a51-2f7e-4b7a-9e0b-hubspotcluster"
HOURLY = extract_dag_id("hourly")
VARIABLE = "airbyte_connection_hubspot_hourly"


def _crm(env: dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CRM, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_up_runs_the_dag_on_the_real_scheduler_and_down_stops_everything(tmp_path: Path) -> None:
    env = {**os.environ, "CRM_LOCAL_DIR": str(tmp_path / "local"), "AIRFLOW_VAR_CRM_SIMULATOR_SCALE": "XS"}
    env.pop("CRM_WAREHOUSE_URL", None)
    env.pop("CRM_DBT_MANIFEST", None)
    run_dir = tmp_path / "local" / "airflow" / "run"
    assert _crm(env, "warehouse", "up").returncode == 0
    hubspot = [s for s in default_catalogue().enabled() if s.airbyte_connection.variable == VARIABLE]
    warehouse = EmbeddedWarehouse(tmp_path / "local" / "warehouse").url("crm")
    double = AirbyteDouble(warehouse, {CONNECTION_ID: hubspot}, client_id="crm-cluster", client_secret="cluster-secret")
    env["AIRFLOW_CONN_AIRBYTE_DEFAULT"] = json.dumps(
        {"conn_type": "airbyte", "host": double.url, "login": double.client_id, "password": double.client_secret}
    )
    try:
        double.__enter__()
        up = _crm(env, "up")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert "Airflow UI: http://127.0.0.1:" in up.stdout
        assert "Log in as admin with the password" in up.stdout
        port = int((run_dir / "api-port").read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=10) as response:
            health = json.load(response)
        assert health["metadatabase"]["status"] == "healthy"

        metadata = _metadata_url(tmp_path / "local")
        for dag_id in pipeline_dag_ids():
            assert _crm(env, "airflow", "dags", "unpause", dag_id).returncode == 0
        runs = _pipeline_runs(metadata, deadline=time.monotonic() + 900)
        extract = {dag_id for dag_id in pipeline_dag_ids() if dag_id != TRANSFORM_DAG_ID}
        assert {(d, t, s) for d, t, s in runs if d in extract} == {(d, "scheduled", "success") for d in extract}, runs
        transforms = {(t, s) for d, t, s in runs if d == TRANSFORM_DAG_ID}
        assert transforms == {("asset_triggered", "success")}, runs
        for dag_id in extract:
            tasks = task_states(metadata, dag_id)
            assert tasks.pop("airbyte_sync") == "skipped", "no Airbyte connection configured: the simulator ran"
            assert set(tasks.values()) == {"success"}, tasks
        assert set(task_states(metadata, TRANSFORM_DAG_ID).values()) == {"success"}

        _marking_the_deferred_sync_failed_cancels_its_airbyte_job(env, double, metadata, port, tmp_path / "local")
    finally:
        double.__exit__()
        pids = [json.loads(p.read_text()) for p in run_dir.glob("*.json")] if run_dir.exists() else []
        down = _crm(env, "down")
        _crm(env, "warehouse", "down")
    assert down.returncode == 0
    assert "stopped: api-server, scheduler, dag-processor, triggerer" in down.stdout
    assert len(pids) == 4
    assert all(_start_time(p["pid"]) != p["started"] for p in pids), "every component process is gone"


def _pipeline_runs(metadata: str, deadline: float) -> list[tuple[str, str, str]]:
    """Wait until each extract DAG's first scheduled run has ended and the transform has consumed every asset
    event (a run per batch of events, one at a time); then every run as (DAG, run type, state)."""
    extract = [dag_id for dag_id in pipeline_dag_ids() if dag_id != TRANSFORM_DAG_ID]
    while True:
        with psycopg.connect(metadata) as conn:
            runs = conn.execute(
                "select dag_id, run_type, state from dag_run where dag_id = any(%s) order by id",
                (pipeline_dag_ids(),),
            ).fetchall()
            queued = conn.execute(
                "select count(*) from asset_dag_run_queue where target_dag_id = %s", (TRANSFORM_DAG_ID,)
            ).fetchone()[0]  # type: ignore[index]
        ended = [(d, t, s) for d, t, s in runs if s in ("success", "failed")]
        extracts_done = {d for d, _, _ in ended if d in extract} == set(extract)
        transform_done = any(d == TRANSFORM_DAG_ID for d, _, _ in ended) and len(ended) == len(runs) and not queued
        if extracts_done and transform_done:
            return [tuple(run) for run in runs]  # type: ignore[misc]
        assert time.monotonic() < deadline, f"the pipeline did not finish: {runs}, {queued} asset events queued"
        time.sleep(5)


def _marking_the_deferred_sync_failed_cancels_its_airbyte_job(
    env: dict[str, str], double: AirbyteDouble, metadata: str, port: int, local_dir: Path
) -> None:
    """A person marks the deferred Airbyte task failed in the UI: the real triggerer calls the trigger's on_kill,
    which cancels the job (no worker process exists to run the operator's on_kill while a task is deferred)."""
    double.mode = "pending"
    assert _crm(env, "airflow", "variables", "set", VARIABLE, CONNECTION_ID).returncode == 0
    assert _crm(env, "airflow", "dags", "trigger", HOURLY).returncode == 0
    sync = f"airbyte_sync[{VARIABLE}]"
    deadline = time.monotonic() + 240
    while task_states(metadata, HOURLY).get(sync) != "deferred":
        assert time.monotonic() < deadline, task_states(metadata, HOURLY)
        time.sleep(2)
    (job_id,) = double.jobs
    assert double.jobs[job_id].status == "pending"
    # "deferred" is written by the worker; the triggerer loads the trigger on its next pass. A kill before that
    # pass has no running trigger to call on_kill on (docs/decisions.md #11), so wait until the trigger polls.
    while ("GET", f"/v1/jobs/{job_id}") not in double.requests:
        assert time.monotonic() < deadline, f"the triggerer never polled job {job_id}: {double.requests}"
        time.sleep(1)

    with psycopg.connect(metadata) as conn:
        (run_id,) = conn.execute(
            "select run_id from dag_run where dag_id = %s order by id desc limit 1", (HOURLY,)
        ).fetchone()
    api = f"http://127.0.0.1:{port}"
    password = json.loads((local_dir / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    token = _http(f"{api}/auth/token", "POST", {"username": "admin", "password": password})["access_token"]
    _http(
        f"{api}/api/v2/dags/{HOURLY}/dagRuns/{run_id}/taskInstances/airbyte_sync/0",
        "PATCH",
        {"new_state": "failed"},
        token=token,
    )
    deadline = time.monotonic() + 90
    while double.jobs[job_id].status != "cancelled":
        assert time.monotonic() < deadline, f"job {job_id} still {double.jobs[job_id].status}: {double.requests}"
        time.sleep(1)
    assert ("DELETE", f"/v1/jobs/{job_id}") in double.requests


def _http(url: str, method: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310  (loopback URL built above)
        return json.load(response)


def _metadata_url(local_dir: Path) -> str:
    return EmbeddedWarehouse(local_dir / "warehouse").url("airflow").libpq()
