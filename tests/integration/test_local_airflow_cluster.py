"""`make up` starts Airflow's real components, the real scheduler runs the pipeline, `make down` stops them all.

The scheduler does what `airflow dags test` cannot, and each test here checks one part of it, in order, on one
running Airflow (a module fixture: starting it costs a minute):

1. each extract DAG starts on its own schedule once unpaused, the transform starts because their admit tasks
   emitted the stream assets, and runs that outlive their deadline alert (the triggerer runs the callback);
2. marking a deferred Airbyte sync failed cancels its job;
3. a failing sync is retried with exponential backoff, then alerts both receivers; the next good run sends the
   recovery alert;
4. `airflow backfill create` runs 7 days of the daily extract side by side (max_active_runs 3) without changing the
   published marts;
5. `make down` stops every process `make up` started.

Runs in its own CRM_LOCAL_DIR (its own embedded warehouse, AIRFLOW_HOME and ports), so a developer's running
`make up` is neither used nor stopped. This is the test that caught Cosmos tasks overwriting the manifest other
tasks were parsing, which `airflow dags test` (one task at a time) cannot show.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import AlertReceivers, task_states
from psycopg import sql

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.local_airflow.processes import _start_time
from crm_pipeline.orchestration.extract import TRANSFORM_DAG_ID, extract_dag_id, pipeline_dag_ids
from crm_pipeline.sources.airbyte_double import AirbyteDouble
from crm_pipeline.warehouse.embedded import EmbeddedWarehouse

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CRM = [sys.executable, "-m", "crm_pipeline.cli"]
CONNECTION_ID = "5d0c8a51-2f7e-4b7a-9e0b-hubspotcluster"
HOURLY, DAILY = extract_dag_id("hourly"), extract_dag_id("daily")
VARIABLE = "airbyte_connection_hubspot_hourly"
HUBSPOT_HOURLY = [s for s in default_catalogue().enabled() if s.airbyte_connection.variable == VARIABLE]
RETRY_DELAY = 3  # seconds before the first retry; the second waits at least twice as long
DEADLINE = 60  # seconds from queued to finished, for every DAG of this cluster
# S, not XS: at XS a day of history is often empty, which a daily stream's volume rule (a row at least) stops.
SCALE = "S"


def _crm(env: dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CRM, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class Cluster:
    env: dict[str, str]
    local_dir: Path
    double: AirbyteDouble
    receivers: AlertReceivers
    port: int = 0
    stopped: list[str] = field(default_factory=list)  # what `crm down` printed, once a test stopped it

    @property
    def run_dir(self) -> Path:
        return self.local_dir / "airflow" / "run"

    @property
    def metadata(self) -> str:
        return EmbeddedWarehouse(self.local_dir / "warehouse").url("airflow").libpq()

    @property
    def warehouse(self) -> str:
        return EmbeddedWarehouse(self.local_dir / "warehouse").url("crm").libpq()

    def airflow(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = _crm(self.env, "airflow", *args)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done

    def runs(self, dag_id: str) -> list[tuple[str, str, str]]:
        """(run id, run type, state) of every run of the DAG, oldest first."""
        with psycopg.connect(self.metadata) as conn:
            rows = conn.execute(
                "select run_id, run_type, state from dag_run where dag_id = %s order by id", (dag_id,)
            ).fetchall()
        return [tuple(row) for row in rows]  # type: ignore[misc]

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> tuple[str, str]:
        """Trigger a run (after the DAG's runs so far have ended); (its id, its final state) once it has ended. By
        its own run id: a scheduled run may start meanwhile (an hour boundary)."""
        self.wait(lambda: all(state in ("success", "failed") for _, _, state in self.runs(dag_id)), 300, dag_id)
        run_id = f"manual__test_{time.time_ns()}"
        self.airflow("dags", "trigger", dag_id, "-c", json.dumps(conf), "--run-id", run_id)
        state = lambda: {r: s for r, _, s in self.runs(dag_id)}.get(run_id)  # noqa: E731
        self.wait(lambda: state() in ("success", "failed"), 600, run_id)
        return run_id, str(state())

    def wait(self, done: Any, seconds: float, what: object = "") -> None:
        deadline = time.monotonic() + seconds
        while not done():
            assert time.monotonic() < deadline, f"gave up waiting after {seconds} s: {what}"
            time.sleep(2)

    def token(self) -> str:
        """A bearer token of the UI's admin user (the password `make up` generated)."""
        generated = self.local_dir / "airflow" / "simple_auth_manager_passwords.json.generated"
        password = json.loads(generated.read_text())["admin"]
        api = f"http://127.0.0.1:{self.port}"
        return _http(f"{api}/auth/token", "POST", {"username": "admin", "password": password})["access_token"]

    def alerts(self, *needles: str) -> tuple[list[str], list[str]]:
        """(webhook texts, emails) that contain every needle."""
        texts = [str(w["text"]) for w in self.receivers.webhooks]
        return [t for t in texts if all(n in t for n in needles)], [
            e for e in self.receivers.emails if all(n in e for n in needles)
        ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    local_dir = tmp_path_factory.mktemp("cluster") / "local"
    receivers = AlertReceivers()
    env = {
        **os.environ,
        **receivers.env(),
        "CRM_LOCAL_DIR": str(local_dir),
        "AIRFLOW_VAR_CRM_SIMULATOR_SCALE": SCALE,
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": str(RETRY_DELAY),
        "CRM_RUN_DEADLINE_SECONDS": str(DEADLINE),
    }
    env.pop("CRM_WAREHOUSE_URL", None)
    env.pop("CRM_DBT_MANIFEST", None)
    assert _crm(env, "warehouse", "up").returncode == 0
    warehouse = EmbeddedWarehouse(local_dir / "warehouse").url("crm")
    double = AirbyteDouble(
        warehouse,
        {CONNECTION_ID: HUBSPOT_HOURLY},
        client_id="crm-cluster",
        client_secret="cluster-secret",  # pragma: allowlist secret
        scale=SCALE,  # the simulated company the Airflow Variable chooses: one world for both paths
    )
    env["AIRFLOW_CONN_AIRBYTE_DEFAULT"] = json.dumps(
        {"conn_type": "airbyte", "host": double.url, "login": double.client_id, "password": double.client_secret}
    )
    cluster = Cluster(env, local_dir, double, receivers)
    try:
        double.__enter__()
        up = _crm(env, "up")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert "Airflow UI: http://127.0.0.1:" in up.stdout
        assert "Log in as admin with the password" in up.stdout
        cluster.port = int((cluster.run_dir / "api-port").read_text())
        yield cluster
    finally:
        double.__exit__()
        if not cluster.stopped:
            _crm(env, "down")
        _crm(env, "warehouse", "down")
        receivers.close()


def test_extract_dags_run_on_their_cadence_and_assets_start_the_transform(cluster: Cluster) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.port}/api/v2/monitor/health", timeout=10) as response:
        health = json.load(response)
    assert health["metadatabase"]["status"] == "healthy"

    for dag_id in pipeline_dag_ids():
        cluster.airflow("dags", "unpause", dag_id)
    runs = _pipeline_runs(cluster.metadata, deadline=time.monotonic() + 900)
    extract = {dag_id for dag_id in pipeline_dag_ids() if dag_id != TRANSFORM_DAG_ID}
    assert {(d, t, s) for d, t, s in runs if d in extract} == {(d, "scheduled", "success") for d in extract}, runs
    transforms = {(t, s) for d, t, s in runs if d == TRANSFORM_DAG_ID}
    assert transforms == {("asset_triggered", "success")}, runs
    for dag_id in extract:
        tasks = task_states(cluster.metadata, dag_id)
        assert tasks.pop("airbyte_sync") == "skipped", "no Airbyte connection configured: the simulator ran"
        assert set(tasks.values()) == {"success"}, tasks
    first, *later = [run_id for run_id, _, _ in cluster.runs(TRANSFORM_DAG_ID)]
    assert set(task_states(cluster.metadata, TRANSFORM_DAG_ID, first).values()) == {"success"}, "a first build is whole"
    for run_id in later:  # later runs build what changed since the first published (models = changed)
        states = task_states(cluster.metadata, TRANSFORM_DAG_ID, run_id)
        assert set(states.values()) <= {"success", "skipped"}, states
        assert (states["audit_marts"], states["publish_marts"]) == ("success", "success")


def test_the_health_page_is_in_the_airflow_ui_for_signed_in_users(cluster: Cluster) -> None:
    """The plugin (``plugins/crm_health.py``) mounts the live page on the api-server, behind Airflow's login, and
    links it from the UI's Browse menu."""
    api = f"http://127.0.0.1:{cluster.port}"
    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(f"{api}/crm/health")
    assert refused.value.code == 401, "no page without a login"
    page = _get(f"{api}/crm/health", cluster.token())
    assert "<h1>CRM pipeline health</h1>" in page and "every stream is fresh" in page, page[:2000]
    plugins = json.loads(_get(f"{api}/api/v2/plugins", cluster.token()))
    views = {v["name"]: v for p in plugins["plugins"] for v in p.get("external_views", [])}
    assert views["CRM pipeline health"]["href"] == "/crm/health", views
    assert views["CRM pipeline health"]["category"] == "Browse", "listed under Browse, beside the dbt docs"


def test_a_run_that_outlives_its_deadline_alerts_both_receivers(cluster: Cluster) -> None:
    """Every DAG here has a 60 s deadline (CRM_RUN_DEADLINE_SECONDS); a dbt build takes longer. The scheduler
    notices and the triggerer runs ``deadline_missed``, which alerts while the run is still going."""
    (run_id, _, _) = cluster.runs(TRANSFORM_DAG_ID)[0]
    subject = f"[crm] {TRANSFORM_DAG_ID}: {run_id} missed its deadline"
    cluster.wait(lambda: all(cluster.alerts(subject)), 120, f"{subject}: {cluster.receivers.webhooks}")
    (webhook, *_), (email, *_) = cluster.alerts(subject)
    for text in (webhook, email):
        assert "queued at" in text and "deadline" in text
        assert f"http://127.0.0.1:{cluster.port}/dags/{TRANSFORM_DAG_ID}/runs/" in text, text
    with psycopg.connect(cluster.metadata) as conn:
        missed = conn.execute(
            "select d.missed, r.run_id from deadline d join dag_run r on r.id = d.dagrun_id where r.dag_id = %s",
            (TRANSFORM_DAG_ID,),
        ).fetchall()
    assert (True, run_id) in missed, missed


def test_marking_the_deferred_sync_failed_cancels_its_airbyte_job(cluster: Cluster) -> None:
    """A person marks the deferred Airbyte task failed in the UI: the real triggerer calls the trigger's on_kill,
    which cancels the job (no worker process exists to run the operator's on_kill while a task is deferred)."""
    double, metadata = cluster.double, cluster.metadata
    double.mode = "pending"
    cluster.airflow("variables", "set", VARIABLE, CONNECTION_ID)
    run_id = f"manual__test_{time.time_ns()}"
    cluster.airflow("dags", "trigger", HOURLY, "--run-id", run_id)
    sync = f"airbyte_sync[{VARIABLE}]"
    deadline = time.monotonic() + 240
    while task_states(metadata, HOURLY, run_id).get(sync) != "deferred":
        assert time.monotonic() < deadline, task_states(metadata, HOURLY, run_id)
        time.sleep(2)
    (job_id,) = double.jobs
    assert double.jobs[job_id].status == "pending"
    # "deferred" is written by the worker; the triggerer loads the trigger on its next pass. A kill before that
    # pass has no running trigger to call on_kill on (docs/decisions.md #11), so wait until the trigger polls.
    while ("GET", f"/v1/jobs/{job_id}") not in double.requests:
        assert time.monotonic() < deadline, f"the triggerer never polled job {job_id}: {double.requests}"
        time.sleep(1)

    api = f"http://127.0.0.1:{cluster.port}"
    token = cluster.token()
    _http(
        f"{api}/api/v2/dags/{HOURLY}/dagRuns/{run_id}/taskInstances/airbyte_sync/0",
        "PATCH",
        {"new_state": "failed"},
        token=token,
    )
    cluster.wait(lambda: double.jobs[job_id].status == "cancelled", 90, f"job {job_id}: {double.requests}")
    assert ("DELETE", f"/v1/jobs/{job_id}") in double.requests


def test_a_failing_sync_retries_with_backoff_then_alerts_and_the_next_good_run_recovers(cluster: Cluster) -> None:
    """Airbyte fails every job: the scheduler retries the sync twice, the second wait at least twice the first
    (exponential backoff), then the failure alerts both receivers, naming DAG, task, streams and log, and no
    secret. The next run that succeeds sends the recovery alert, once."""
    conf = {"streams": [s.key for s in HUBSPOT_HOURLY]}  # only the Airbyte connection's streams: a short run
    cluster.double.mode = "fail"
    failed, state = cluster.trigger(HOURLY, conf)
    assert state == "failed"
    with psycopg.connect(cluster.metadata) as conn:
        tries = conn.execute(
            "select try_number, start_date, end_date from task_instance_history where dag_id = %s and run_id = %s"
            " and task_id = 'airbyte_sync' union all select try_number, start_date, end_date from task_instance"
            " where dag_id = %s and run_id = %s and task_id = 'airbyte_sync' order by 1",
            (HOURLY, failed, HOURLY, failed),
        ).fetchall()
    assert [t[0] for t in tries] == [1, 2, 3], tries
    waits = [(later[1] - earlier[2]).total_seconds() for earlier, later in itertools.pairwise(tries)]
    assert waits[0] >= RETRY_DELAY and waits[1] >= 2 * RETRY_DELAY, f"waits between tries: {waits}"

    subject = f"[crm] {HOURLY}: airbyte_sync[{VARIABLE}] failed"
    cluster.wait(lambda: all(cluster.alerts(subject, failed)), 60, cluster.receivers.webhooks)
    webhooks, emails = cluster.alerts(subject, failed)
    assert (len(webhooks), len(emails)) == (1, 1), "one alert per receiver, after the last try, not per try"
    for text in (webhooks[0], emails[0]):
        assert "try: 3" in text or "try</th><td>3" in text, text
        assert all(s.key in text for s in HUBSPOT_HOURLY), "the alert names the connection's streams"
        assert f"http://127.0.0.1:{cluster.port}/dags/{HOURLY}/runs/" in text
    everything = "".join(str(w["text"]) for w in cluster.receivers.webhooks) + "".join(cluster.receivers.emails)
    assert cluster.double.client_secret not in everything
    assert AlertReceivers.WEBHOOK_SECRET not in everything

    cluster.double.mode = "ok"
    recovered, state = cluster.trigger(HOURLY, conf)
    assert state == "success"
    subject = f"[crm] {HOURLY}: recovered, {recovered} succeeded"
    cluster.wait(lambda: all(cluster.alerts(subject)), 120, cluster.receivers.webhooks)
    webhooks, emails = cluster.alerts(subject)
    assert (len(webhooks), len(emails)) == (1, 1)
    assert f"airbyte_sync[{VARIABLE}] in {failed}" in webhooks[0]
    # The incident is closed: another good run sends nothing more.
    again, _ = cluster.trigger(HOURLY, conf)
    time.sleep(15)  # the DAG processor runs success callbacks a few seconds after the run ends
    assert cluster.alerts(f"[crm] {HOURLY}: recovered, {again}") == ([], [])


def test_a_seven_day_backfill_runs_side_by_side_and_changes_no_mart(cluster: Cluster) -> None:
    """``airflow backfill create`` over 7 days of the daily extract, 3 runs at a time (the DAG itself allows one
    scheduled run at a time). Each run delivers its day of history again as a batch of its own, gated; the
    transform rebuilds from them. History delivered twice must leave the published marts exactly as they were.
    Full-refresh streams (no history) are left out."""
    for dag_id in (HOURLY, extract_dag_id("every_6h")):  # nothing but the backfill may change the marts now
        cluster.airflow("dags", "pause", dag_id)
    _transform_idle(cluster, deadline=time.monotonic() + 600)  # what earlier tests admitted is published first
    before = _mart_checksums(cluster.warehouse)
    transforms_before = len(cluster.runs(TRANSFORM_DAG_ID))
    started = time.monotonic()
    cluster.airflow(
        "backfill", "create", "--dag-id", DAILY, "--from-date", "2025-12-25", "--to-date", "2025-12-31",
        "--max-active-runs", "3",
    )  # fmt: skip
    backfill = lambda: [r for r in cluster.runs(DAILY) if r[1] == "backfill"]  # noqa: E731
    cluster.wait(lambda: len(backfill()) == 7 and all(s in ("success", "failed") for _, _, s in backfill()), 1500)
    assert {state for _, _, state in backfill()} == {"success"}, backfill()
    _transform_idle(cluster, deadline=time.monotonic() + 600)
    after = cluster.runs(TRANSFORM_DAG_ID)[transforms_before:]
    assert after, "the backfill's batches started the transform"
    # Every transform of this cluster, not only the backfill's: syncs replacing raw rows (dedup streams, from the
    # backfill and the schedules, simulated and through Airbyte) never landed under a transform between its
    # build and its audit (the transform lease), so no audit refused to publish good marts.
    transforms = cluster.runs(TRANSFORM_DAG_ID)
    assert {state for _, _, state in transforms} == {"success"}, f"transform runs: {transforms}"
    with psycopg.connect(cluster.metadata) as conn:
        waited = conn.execute(
            "select count(*) from task_reschedule r join task_instance t on t.id = r.ti_id where t.dag_id = %s",
            (DAILY,),
        ).fetchone()[0]  # type: ignore[index]
    print(f"daily syncs rescheduled while a transform read raw: {waited}")

    with psycopg.connect(cluster.metadata) as conn:
        spans = conn.execute(
            "select data_interval_start, data_interval_end, start_date, end_date from dag_run"
            " where dag_id = %s and run_type = 'backfill' order by data_interval_start",
            (DAILY,),
        ).fetchall()
    assert [(s[1] - s[0]).days for s in spans] == [1] * 7
    assert _most_at_once([(s[2], s[3]) for s in spans]) > 1, "backfill runs went side by side"

    daily = [s.key for s in default_catalogue().by_cadence()["daily"] if s.sync_mode != "full_refresh_overwrite"]
    with psycopg.connect(cluster.warehouse) as conn:
        batches = conn.execute(
            "select stream, count(*), count(distinct sync_id) from crm_audit.stream_runs where run_id = any(%s)"
            " group by stream",
            ([run_id for run_id, _, _ in backfill()],),
        ).fetchall()
    assert {stream: (n, distinct) for stream, n, distinct in batches} == {s: (7, 7) for s in daily}
    assert _mart_checksums(cluster.warehouse) == before, "history delivered again changed the marts"
    print(f"7-day backfill and transform: {time.monotonic() - started:.0f} s")


def test_down_stops_every_process_up_started(cluster: Cluster) -> None:
    pids = [json.loads(p.read_text()) for p in cluster.run_dir.glob("*.json")]
    down = _crm(cluster.env, "down")
    cluster.stopped.append(down.stdout)
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


def _transform_idle(cluster: Cluster, deadline: float) -> None:
    """Wait until no transform run is queued or running and no asset event waits for one."""
    while True:
        runs = cluster.runs(TRANSFORM_DAG_ID)
        with psycopg.connect(cluster.metadata) as conn:
            queued = conn.execute(
                "select count(*) from asset_dag_run_queue where target_dag_id = %s", (TRANSFORM_DAG_ID,)
            ).fetchone()[0]  # type: ignore[index]
        if not queued and all(state in ("success", "failed") for _, _, state in runs):
            return
        assert time.monotonic() < deadline, f"the transform is still busy: {runs}, {queued} events queued"
        time.sleep(5)


def _most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """The largest number of the (start, end) spans that overlap at one moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


# Columns that say when a row's inputs were last loaded, not what the CRMs hold: loading history again moves them
# by design (Airbyte's dedup keeps the latest extraction of an unchanged record), and the incremental facts use
# them to find rows to reprocess. The backfill must leave everything else exactly as it was.
LOAD_TIME_COLUMNS = {("fct_activities", "changed_at"), ("fct_opportunity_stage_history", "loaded_at")}


def _mart_checksums(warehouse: str) -> dict[str, str]:
    """md5 of each published mart's rows (without its load-time columns) in a fixed order: equal checksums,
    equal marts."""
    with psycopg.connect(warehouse) as conn:
        columns: dict[str, list[str]] = {}
        for table, column in conn.execute(
            "select table_name, column_name from information_schema.columns where table_schema = 'marts'"
            " order by table_name, ordinal_position"
        ):
            if (table, column) not in LOAD_TIME_COLUMNS:
                columns.setdefault(table, []).append(column)
        checksums = {}
        for table, names in columns.items():
            row = sql.SQL("({})").format(sql.SQL(", ").join(map(sql.Identifier, names)))
            query = sql.SQL(
                "select md5(coalesce(string_agg(r::text, '|' order by r::text), '')) from (select {} as r from {}) t"
            ).format(row, sql.Identifier("marts", table))
            checksums[table] = conn.execute(query).fetchone()[0]  # type: ignore[index]
        return checksums


def _get(url: str, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310  (loopback URLs built here)
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        return response.read().decode()


def _http(url: str, method: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310  (loopback URL built above)
        return json.load(response)
