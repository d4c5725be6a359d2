"""A task that tries its hardest to leak the warehouse password and the PII pepper shows them to nobody: not in
its log, not in its error, not in the alerts it sends. Real ``airflow dags test``, real SMTP and HTTP receivers
on loopback.

The probe DAG lives in the test's own DAGs folder and uses the project's default arguments, so the alerts are the
project's notifiers (``alerts/``), which redact through Airflow's secrets masker. Airflow registers a
connection's password with the masker when a task reads the connection; the probe reads them the way every
project task does (``task_warehouse_url`` with its role's connection, ``pii_pepper``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import VENV_BIN, AlertReceivers, LocalAirflow, _free_port

from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration

PASSWORD = "Probe-Warehouse-Passw0rd-7c41"  # pragma: allowlist secret
PEPPER = "Probe-PII-Pepper-of-Some-Length-9d2e"  # pragma: allowlist secret
PROBE = '''
"""A task that prints the warehouse URL with its password and the PII pepper, then fails with both in the error."""
from airflow.sdk import dag, task

from crm_pipeline.orchestration.defaults import DEFAULT_ARGS, START_DATE


@dag(schedule=None, start_date=START_DATE, default_args={**DEFAULT_ARGS, "retries": 0}, tags=["test"])
def crm_secret_probe():
    @task
    def leak() -> None:
        import logging

        from crm_pipeline.paths import TRANSFORMER_CONN_ID
        from crm_pipeline.warehouse.locate import task_warehouse_url
        from crm_pipeline.warehouse.pii import pii_pepper

        url, pepper = task_warehouse_url(TRANSFORMER_CONN_ID), pii_pepper()
        print("print:", url.libpq(), "pepper:", pepper)
        logging.getLogger(__name__).warning("log: %s pepper: %s", url.libpq(), pepper)
        raise RuntimeError(f"error: cannot use {url.libpq()} (password {url.password}, pepper {pepper})")

    leak()


crm_secret_probe()
'''


@contextmanager
def api_server(local_airflow: LocalAirflow, warehouse: WarehouseUrl, env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A real api-server on a free loopback port (the executor's tasks report to its execution API); stopped after."""
    port = _free_port()
    api = {
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
    }
    log = (local_airflow.home / "api-server.log").open("ab")
    proc = subprocess.Popen(
        [str(VENV_BIN / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port)],
        env={**local_airflow.env(warehouse, {}), **env, **api},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not _answers(f"http://127.0.0.1:{port}/api/v2/monitor/health"):
            assert proc.poll() is None and time.monotonic() < deadline, "the api-server did not start"
            time.sleep(1)
        yield api
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return response.status == 200
    except OSError:
        return False


def test_a_leaking_task_shows_the_password_and_the_pepper_to_nobody(
    local_airflow: LocalAirflow, warehouse: WarehouseUrl, alert_receivers: AlertReceivers, tmp_path: Path
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "crm_secret_probe.py").write_text(PROBE)
    # The probe never connects: it only reads the connection, so a password of our choosing will do.
    leaky = WarehouseUrl(warehouse.host, warehouse.port, "crm_transformer", PASSWORD, warehouse.database)
    env = {
        **alert_receivers.env(),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW_CONN_CRM_WAREHOUSE_TRANSFORMER": leaky.airflow_conn_uri(),
        "AIRFLOW_CONN_CRM_PII_PEPPER": json.dumps({"conn_type": "generic", "password": PEPPER}),
        # `dags test --use-executor` sometimes never returns (twice in about ten runs): LocalExecutor forks
        # `parallelism` workers at once, and at the end one of them, idle, never gets its shutdown message while
        # end() joins it (py-spy: end() in join, the worker in Queue.get, its siblings exited). One task needs one
        # worker. Lineage is not what this test checks either, and its listener forks a process pool of its own.
        "AIRFLOW__CORE__PARALLELISM": "1",
        "AIRFLOW__OPENLINEAGE__DISABLED": "True",
    }
    with api_server(local_airflow, warehouse, env) as api:
        # Under the executor, as on a deployment: the task runs in its own supervised process, which writes the
        # task log the UI shows (plain `dags test` runs the task inside the CLI and only echoes to the console).
        run = local_airflow.dags_test(
            "crm_secret_probe",
            warehouse,
            {**env, **api},
            options=("--use-executor",),
            dagfile=dags / "crm_secret_probe.py",
        )
    assert run.returncode != 0, "the probe fails, as written"

    logs = [p.read_text() for p in (local_airflow.home / "logs" / "dag_id=crm_secret_probe").rglob("*.log")]
    # The CLI's own console is left out: `dags test` echoes the task's events to the terminal of whoever ran it.
    seen = {"task log": "\n".join(logs)}
    seen |= {f"email {i}": text for i, text in enumerate(alert_receivers.emails)}
    seen |= {f"webhook {i}": str(hook) for i, hook in enumerate(alert_receivers.webhooks)}
    assert len(alert_receivers.emails) == 1 and len(alert_receivers.webhooks) == 1, "the failure alerted both"
    for where in ("task log", "email 0", "webhook 0"):
        assert "error: cannot use postgresql://crm_transformer:***@" in seen[where], where
        assert "pepper ***)" in seen[where], where
    assert "print: postgresql://crm_transformer:***@" in seen["task log"]
    assert "log: postgresql://crm_transformer:***@" in seen["task log"]
    assert "pepper: ***" in seen["task log"]
    leaked = [where for where, text in seen.items() if PASSWORD in text or PEPPER in text]
    assert leaked == []
