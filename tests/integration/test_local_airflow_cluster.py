"""`make up` starts Airflow's real components, the real scheduler runs the pipeline, `make down` stops them all.

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
from crm_pipeline.sources.airbyte_double import AirbyteDouble
from crm_pipeline.warehouse.embedded import EmbeddedWarehouse

pytestmark = pytest.mark.integration
CRM = [sys.executable, "-m", "crm_pipeline.cli"]
CONNECTION_ID = "5d0c8a51-2f7e-4b7a-9e0b-hubspotcluster"


def _crm(env: dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CRM, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_up_runs_the_dag_on_the_real_scheduler_and_down_stops_everything(tmp_path: Path) -> None:
    env = {**os.environ, "CRM_LOCAL_DIR": str(tmp_path / "local"), "AIRFLOW_VAR_CRM_SIMULATOR_SCALE": "XS"}
    env.pop("CRM_WAREHOUSE_URL", None)
    env.pop("CRM_DBT_MANIFEST", None)
    run_dir = tmp_path / "local" / "airflow" / "run"
    assert _crm(env, "warehouse", "up").returncode == 0
    hubspot = [s for s in default_catalogue().enabled() if s.source == "hubspot"]
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

        assert _crm(env, "airflow", "dags", "unpause", "crm_elt").returncode == 0
        assert _crm(env, "airflow", "dags", "trigger", "crm_elt").returncode == 0
        metadata = _metadata_url(tmp_path / "local")
        deadline, state = time.monotonic() + 420, None
        while time.monotonic() < deadline:
            with psycopg.connect(metadata) as conn:
                row = conn.execute("select state from dag_run where dag_id = 'crm_elt' order by id desc limit 1")
                state = (row.fetchone() or [None])[0]
            if state in ("success", "failed"):
                break
            time.sleep(5)
        tasks = task_states(metadata, "crm_elt")
        assert state == "success", tasks
        assert tasks.pop("extract.airbyte_sync") == "skipped", "no Airbyte connection configured: the simulator ran"
        assert set(tasks.values()) == {"success"}, tasks

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


def _marking_the_deferred_sync_failed_cancels_its_airbyte_job(
    env: dict[str, str], double: AirbyteDouble, metadata: str, port: int, local_dir: Path
) -> None:
    """A person marks the deferred Airbyte task failed in the UI: the real triggerer calls the trigger's on_kill,
    which cancels the job (no worker process exists to run the operator's on_kill while a task is deferred)."""
    double.mode = "pending"
    assert _crm(env, "airflow", "variables", "set", "airbyte_connection_hubspot", CONNECTION_ID).returncode == 0
    assert _crm(env, "airflow", "dags", "trigger", "crm_elt").returncode == 0
    sync = "extract.airbyte_sync[airbyte_connection_hubspot]"
    deadline = time.monotonic() + 240
    while task_states(metadata, "crm_elt").get(sync) != "deferred":
        assert time.monotonic() < deadline, task_states(metadata, "crm_elt")
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
            "select run_id from dag_run where dag_id = 'crm_elt' order by id desc limit 1"
        ).fetchone()
    api = f"http://127.0.0.1:{port}"
    password = json.loads((local_dir / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    token = _http(f"{api}/auth/token", "POST", {"username": "admin", "password": password})["access_token"]
    _http(
        f"{api}/api/v2/dags/crm_elt/dagRuns/{run_id}/taskInstances/extract.airbyte_sync/0",
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
