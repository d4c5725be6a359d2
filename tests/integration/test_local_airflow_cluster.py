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

import psycopg
import pytest

from crm_pipeline.local_airflow.processes import _start_time
from crm_pipeline.warehouse.embedded import EmbeddedWarehouse

pytestmark = pytest.mark.integration
CRM = [sys.executable, "-m", "crm_pipeline.cli"]


def _crm(env: dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CRM, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_up_runs_the_dag_on_the_real_scheduler_and_down_stops_everything(tmp_path: Path) -> None:
    env = {**os.environ, "CRM_LOCAL_DIR": str(tmp_path / "local"), "AIRFLOW_VAR_CRM_SIMULATOR_SCALE": "XS"}
    env.pop("CRM_WAREHOUSE_URL", None)
    env.pop("CRM_DBT_MANIFEST", None)
    run_dir = tmp_path / "local" / "airflow" / "run"
    try:
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
        with psycopg.connect(metadata) as conn:
            tasks = dict(conn.execute("select task_id, state from task_instance where dag_id = 'crm_elt'").fetchall())
        assert state == "success", tasks
        airbyte_path = {t for t in tasks if t.startswith(("extract.airbyte__", "extract.airbyte_job__"))}
        assert {tasks[t] for t in airbyte_path} == {"skipped"}, "no Airbyte connection configured: the simulator ran"
        assert {s for t, s in tasks.items() if t not in airbyte_path} == {"success"}, tasks
    finally:
        pids = [json.loads(p.read_text()) for p in run_dir.glob("*.json")] if run_dir.exists() else []
        down = _crm(env, "down")
        _crm(env, "warehouse", "down")
    assert down.returncode == 0
    assert "stopped: api-server, scheduler, dag-processor, triggerer" in down.stdout
    assert len(pids) == 4
    assert all(_start_time(p["pid"]) != p["started"] for p in pids), "every component process is gone"


def _metadata_url(local_dir: Path) -> str:
    return EmbeddedWarehouse(local_dir / "warehouse").url("airflow").libpq()
