"""Integration fixtures: real PostgreSQL, real Airflow (``airflow dags test``), real dbt through Cosmos, real GX.

The server is the embedded one (or ``CRM_WAREHOUSE_URL``). Each test gets its own warehouse database, and the
session gets its own Airflow metadata database and AIRFLOW_HOME, so tests never see each other's data or the
demo's, and everything they create is dropped afterwards.
"""

from __future__ import annotations

import contextlib
import email
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.local_airflow.environment import airflow_environment
from crm_pipeline.orchestration.defaults import DAGS_TEST_ENVIRONMENT
from crm_pipeline.orchestration.extract import extract_dag_id, pipeline_dag_ids
from crm_pipeline.paths import DAGS_DIR, LOCAL_DIR
from crm_pipeline.warehouse.locate import drop_database, ensure_database, resolve_warehouse_url
from crm_pipeline.warehouse.roles import apply_grants
from crm_pipeline.warehouse.url import WarehouseUrl

VENV_BIN = Path(sys.executable).parent


def expected_warning(rule: str, severity: str) -> bool:
    """Foreign-key warnings are expected on clean data: HubSpot's connector does not emit archived companies and
    contacts, and the simulated Salesforce keeps contacts of merged-away accounts, so some references never
    resolve (which is why foreign keys are warnings, docs/decisions.md #14)."""
    return severity == "warn" and ":foreign_key:" in rule


_drop_database = drop_database  # the name the test modules import


@pytest.fixture(scope="session")
def server() -> WarehouseUrl:
    """The session's PostgreSQL server. Under pytest-xdist every worker asks for it at once: a file lock lets the
    first start the embedded server while the others wait, then find it running."""
    LOCAL_DIR.mkdir(parents=True, exist_ok=True)
    with (LOCAL_DIR / "tests-server.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return resolve_warehouse_url()


@pytest.fixture(scope="session")
def metadata_db(server: WarehouseUrl) -> Iterator[WarehouseUrl]:
    name = f"airflow_it_{uuid.uuid4().hex[:8]}"
    ensure_database(server, name)
    yield server.with_database(name)
    _drop_database(server, name)


@contextmanager
def copied_database(server: WarehouseUrl, source: WarehouseUrl, prefix: str) -> Iterator[WarehouseUrl]:
    """A copy of ``source`` (``create database … template``; nobody may be connected to it), dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.with_database("postgres").libpq(), autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("create database {} template {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.Identifier(source.database)
            )
        )
    try:
        yield server.with_database(name)
    finally:
        _drop_database(server, name)


@contextmanager
def scratch_database(server: WarehouseUrl, prefix: str) -> Iterator[WarehouseUrl]:
    """A new, uniquely named database on ``server``, dropped afterwards whatever happened."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    ensure_database(server, name)
    try:
        yield server.with_database(name)
    finally:
        _drop_database(server, name)


@pytest.fixture
def warehouse(server: WarehouseUrl) -> Iterator[WarehouseUrl]:
    with scratch_database(server, "crm_it") as scratch:
        yield scratch


_DEPLOYED: set[WarehouseUrl] = set()


def deploy(warehouse: WarehouseUrl) -> None:
    """The deploy step (``crm warehouse grants``), once per warehouse database: the tasks log in as the pipeline's
    roles, which use the structure and grants it installs."""
    if warehouse in _DEPLOYED:
        return
    with psycopg.connect(warehouse.libpq()) as conn:
        apply_grants(conn)
    _DEPLOYED.add(warehouse)


def dag_file(dag_id: str) -> Path:
    """The file in dags/ that defines ``dag_id``: ``airflow dags test -f`` parses it alone, not the whole folder
    (every extract DAG comes from crm_extract.py, each other DAG from the file of its name)."""
    path = DAGS_DIR / f"{'crm_extract' if dag_id.startswith('crm_extract_') else dag_id}.py"
    assert path.is_file(), f"no DAG file for {dag_id}: {path}"
    return path


@dataclass
class AirflowRun:
    returncode: int
    log: str
    run_id: str


def failed_runs(runs: dict[str, AirflowRun]) -> dict[str, str]:
    """``{dag id: the end of its log}`` for the runs of a pipeline pass that failed."""
    return {dag_id: run.log[-3000:] for dag_id, run in runs.items() if run.returncode != 0}


@dataclass
class LocalAirflow:
    """Runs Airflow CLI commands for one warehouse database with the session's metadata DB."""

    home: Path
    metadata: WarehouseUrl

    def env(self, warehouse: WarehouseUrl, variables: dict[str, str]) -> dict[str, str]:
        deploy(warehouse)
        env = {**os.environ, **airflow_environment(warehouse, self.metadata, airflow_home=self.home)}
        # The worker's own Cosmos cache: dbt's partial parse is only valid for the database it was written for, and
        # the other worker's transforms (another database) would overwrite a shared one under this one's tasks.
        env["AIRFLOW__COSMOS__CACHE_DIR"] = str(self.home / "cosmos")
        env.update({f"AIRFLOW_VAR_{k.upper()}": v for k, v in variables.items()})
        return env

    def dags_test(
        self,
        dag_id: str,
        warehouse: WarehouseUrl,
        extra_env: dict[str, str] | None = None,
        conf: dict[str, Any] | None = None,
        options: tuple[str, ...] = (),
        dagfile: Path | None = None,
        **variables: str,
    ) -> AirflowRun:
        """``airflow dags test`` of one DAG, with ``conf`` as the run's params and ``options`` added to the command;
        the DAG is parsed from ``dagfile`` alone, by default its file in dags/.

        It runs in its own process group, killed whole when it is done or after 15 minutes: whatever it forked (an
        executor's workers, a listener's process pool) never outlives the test."""
        proc = subprocess.Popen(
            [
                *(str(VENV_BIN / "airflow"), "dags", "test", dag_id, "-f", str(dagfile or dag_file(dag_id)), *options),
                *(["-c", json.dumps(conf)] if conf else []),
            ],
            env={**self.env(warehouse, variables), **DAGS_TEST_ENVIRONMENT, **(extra_env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            stderr += f"\n[test harness] airflow dags test {dag_id} killed after 900 s"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        with psycopg.connect(self.metadata.libpq()) as conn:
            row = conn.execute(
                "select run_id from dag_run where dag_id = %s order by id desc limit 1", (dag_id,)
            ).fetchone()
        return AirflowRun(proc.returncode, stdout + stderr, row[0] if row else "")

    def pipeline(
        self, warehouse: WarehouseUrl, extra_env: dict[str, str] | None = None, **variables: str
    ) -> dict[str, AirflowRun]:
        """The extract DAGs side by side, as a scheduler runs them (each syncs its own streams), then the transform,
        each with ``airflow dags test`` (which runs one DAG and never schedules another): one pass of the pipeline.
        Keyed by DAG id, in run order. Side by side, one extract's wait (an Airbyte trigger's poll) costs no time.

        Each extract starts once the one before has created its run: ``dags test`` first writes the parsed DAG file
        to the metadata database, and two processes writing the same file's DAGs at once race on its rows. A DAG
        with a configured Airbyte connection starts first: its job waits for the trigger's first poll (60 s)."""
        *extracts, transform = pipeline_dag_ids()
        by_airbyte = {spec.airbyte_connection.variable: spec.cadence for spec in default_catalogue().enabled()}
        waiting = {extract_dag_id(by_airbyte[v]) for v in variables if v in by_airbyte}
        extracts.sort(key=lambda dag_id: dag_id not in waiting)
        deploy(warehouse)  # once, before the threads
        with ThreadPoolExecutor(len(extracts)) as pool:
            running = {}
            for dag_id in extracts:
                before = self.run_count(dag_id)
                running[dag_id] = pool.submit(self.dags_test, dag_id, warehouse, extra_env, **variables)
                while self.run_count(dag_id) == before and not running[dag_id].done():
                    time.sleep(0.5)
            runs = {dag_id: future.result() for dag_id, future in running.items()}
        return {**runs, transform: self.dags_test(transform, warehouse, extra_env, **variables)}

    def run_count(self, dag_id: str) -> int:
        with psycopg.connect(self.metadata.libpq()) as conn:
            row = conn.execute("select count(*) from dag_run where dag_id = %s", (dag_id,)).fetchone()
        return int(row[0]) if row else 0

    def asset_events(self, dag_id: str, run_id: str) -> dict[str, str]:
        """``{asset uri: task that emitted it}`` for one run."""
        with psycopg.connect(self.metadata.libpq()) as conn:
            rows = conn.execute(
                "select a.uri, e.source_task_id from asset_event e join asset a on a.id = e.asset_id"
                " where e.source_dag_id = %s and e.source_run_id = %s",
                (dag_id, run_id),
            ).fetchall()
        return dict(rows)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """``{task id: state}``; a mapped task's instances as ``task_id[rendered map index]``."""
        return task_states(self.metadata, dag_id, run_id)


def task_states(metadata: WarehouseUrl | str, dag_id: str, run_id: str | None = None) -> dict[str, str | None]:
    """Task states of one run (the latest when ``run_id`` is None); mapped instances as ``task_id[map index name]``."""
    libpq = metadata if isinstance(metadata, str) else metadata.libpq()
    with psycopg.connect(libpq) as conn:
        rows = conn.execute(
            "select task_id, map_index, rendered_map_index, state from task_instance where dag_id = %s and run_id ="
            " coalesce(%s, (select run_id from dag_run where dag_id = %s order by id desc limit 1))",
            (dag_id, run_id, dag_id),
        ).fetchall()
    return {
        task_id if index < 0 else f"{task_id}[{rendered or index}]": state for task_id, index, rendered, state in rows
    }


@pytest.fixture(scope="session")
def local_airflow(
    metadata_db: WarehouseUrl, server: WarehouseUrl, tmp_path_factory: pytest.TempPathFactory
) -> LocalAirflow:
    airflow = LocalAirflow(home=tmp_path_factory.mktemp("airflow_home"), metadata=metadata_db)
    subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"],
        env={**os.environ, **airflow_environment(server, metadata_db, airflow_home=airflow.home)},
        check=True,
        capture_output=True,
        timeout=600,
    )
    return airflow


class AlertReceivers:
    """A real SMTP server and a real HTTP webhook receiver on loopback, recording what the alerts deliver."""

    # The secret part of a Slack-style webhook URL: alerts and logs must never show it.
    WEBHOOK_SECRET = "T0CRM/B0CRM/webhook-secret-token"  # pragma: allowlist secret

    def __init__(self) -> None:
        self.emails: list[str] = []  # headers, then the decoded body
        self.webhooks: list[dict[str, object]] = []
        receivers = self

        class Mailbox:
            async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:  # aiosmtpd's hook
                message = email.message_from_bytes(envelope.content)
                parts = [p.get_payload(decode=True) for p in message.walk() if not p.is_multipart()]
                headers = "".join(f"{name}: {value}\n" for name, value in message.items())
                receivers.emails.append(headers + "".join(p.decode("utf-8", "replace") for p in parts if p))
                return "250 OK"

        class Webhook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receivers.webhooks.append({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self._smtp = Controller(Mailbox(), hostname="127.0.0.1", port=_free_port())
        self._smtp.start()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def env(self) -> dict[str, str]:
        """Airflow connections that point the project's alert notifiers at these receivers."""
        smtp_port = self._smtp.server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        webhook = f"http://127.0.0.1:{self._http.server_address[1]}/services/{self.WEBHOOK_SECRET}"
        return {
            "AIRFLOW_CONN_CRM_ALERTS_WEBHOOK": json.dumps({"conn_type": "http", "password": webhook}),
            "AIRFLOW_CONN_CRM_ALERTS_SMTP": json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": smtp_port,
                    "extra": {
                        "disable_ssl": True,
                        "disable_tls": True,
                        "to": "data-team@example.com",
                        "from_email": "crm@example.com",
                    },
                }
            ),
        }

    def close(self) -> None:
        self._smtp.stop()
        self._http.shutdown()


def _free_port() -> int:
    """A port free right now (aiosmtpd connects to its own port to confirm it started, so 0 will not do)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def alert_receivers() -> Iterator[AlertReceivers]:
    receivers = AlertReceivers()
    try:
        yield receivers
    finally:
        receivers.close()
