"""`make up` starts Airflow's real components, the real scheduler runs the pipeline, `make down` stops them all.

The scheduler does what `airflow dags test` cannot, and each test here checks one part of it, in order, on one
running Airflow (a module fixture: starting it costs a minute):

1. each extract DAG starts on its own schedule once unpaused, the transform starts because their admit tasks
   emitted the stream assets, and runs that outlive their deadline alert (the triggerer runs the callback);
2. marking a deferred Airbyte sync failed cancels its job;
3. a failing sync is retried with exponential backoff, then alerts both receivers; the next good run sends the
   recovery alert;
4. `make down` stops every process `make up` started.

The backfill (4 days, side by side, with a transform reading raw in the middle of it) runs on the Celery cluster
(test_celery_cluster.py).

Runs in its own CRM_LOCAL_DIR (its own embedded warehouse, AIRFLOW_HOME and ports), so a developer's running
`make up` is neither used nor stopped. This is the test that caught Cosmos tasks overwriting the manifest other
tasks were parsing, which `airflow dags test` (one task at a time) cannot show.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from airflow_cluster import crm, dag_runs, http_get, http_json, wait
from conftest import AlertReceivers, task_states

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.local_airflow.processes import _start_time
from crm_pipeline.orchestration.extract import TRANSFORM_DAG_ID, extract_dag_id, pipeline_dag_ids
from crm_pipeline.sources.airbyte_double import AirbyteDouble
from crm_pipeline.warehouse.embedded import EmbeddedWarehouse

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CONNECTION_ID = "5d0c8a51-2f7e-4b7a-9e0b-6c1a5e7d0002"
HOURLY, DAILY = extract_dag_id("hourly"), extract_dag_id("daily")
VARIABLE = "airbyte_connection_hubspot_hourly"
HUBSPOT_HOURLY = [s for s in default_catalogue().enabled() if s.airbyte_connection.variable == VARIABLE]
RETRY_DELAY = 3  # seconds before the first retry; the second waits at least twice as long
DEADLINE = 60  # seconds from queued to finished, for every DAG of this cluster
# S, not XS: at XS a day of history is often empty, which a daily stream's volume rule (a row at least) stops.
SCALE = "S"


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
        done = crm(self.env, "airflow", *args)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done

    def runs(self, dag_id: str) -> list[tuple[str, str, str]]:
        return dag_runs(self.metadata, dag_id)

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> tuple[str, str]:
        """Trigger a run (after the DAG's runs so far have ended); (its id, its final state) once it has ended. By
        its own run id: a scheduled run may start meanwhile (an hour boundary)."""
        self.wait(lambda: self.ended(dag_id), 1200, dag_id)
        run_id = f"manual__test_{time.time_ns()}"
        self.airflow("dags", "trigger", dag_id, "-c", json.dumps(conf), "--run-id", run_id)
        state = lambda: {r: s for r, _, s in self.runs(dag_id)}.get(run_id)  # noqa: E731
        self.wait(lambda: state() in ("success", "failed"), 1200, run_id)
        return run_id, str(state())

    def ended(self, dag_id: str) -> bool:
        """No run of the DAG is queued or running."""
        return all(state in ("success", "failed") for _, _, state in self.runs(dag_id))

    def wait(self, done: Any, seconds: float, what: object = "") -> None:
        wait(done, seconds, what)

    def dag_processor_log(self) -> str:
        """What the DAG processor logged while parsing DAG files and running their DAG callbacks."""
        logs = self.local_dir / "airflow" / "logs" / "dag_processor"
        return "".join(p.read_text(errors="replace") for p in sorted(logs.rglob("*.log")))

    def token(self) -> str:
        """A bearer token of the UI's admin user (the password `make up` generated)."""
        generated = self.local_dir / "airflow" / "simple_auth_manager_passwords.json.generated"
        password = json.loads(generated.read_text())["admin"]
        api = f"http://127.0.0.1:{self.port}"
        return http_json(f"{api}/auth/token", "POST", {"username": "admin", "password": password})["access_token"]

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
    assert crm(env, "warehouse", "up").returncode == 0
    warehouse = EmbeddedWarehouse(local_dir / "warehouse").url("crm")
    double = AirbyteDouble(
        warehouse,
        {CONNECTION_ID: HUBSPOT_HOURLY},
        client_id="crm-cluster",
        client_secret="cluster-secret",  # pragma: allowlist secret
        scale=SCALE,  # the simulated company the Airflow Variable chooses: one world for both paths
        roles_dir=local_dir / "roles",  # the cluster's deploy made the loader's login, with its own password
    )
    env["AIRFLOW_CONN_AIRBYTE_DEFAULT"] = json.dumps(
        {"conn_type": "airbyte", "host": double.url, "login": double.client_id, "password": double.client_secret}
    )
    cluster = Cluster(env, local_dir, double, receivers)
    try:
        double.__enter__()
        up = crm(env, "up")
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert "Airflow UI: http://127.0.0.1:" in up.stdout
        assert "Log in as admin with the password" in up.stdout
        _up_keeps_its_secrets_private(local_dir, up.stdout)
        cluster.port = int((cluster.run_dir / "api-port").read_text())
        yield cluster
    finally:
        double.__exit__()
        if not cluster.stopped:
            crm(env, "down")
        crm(env, "warehouse", "down")
        receivers.close()


def test_extract_dags_run_on_their_cadence_and_assets_start_the_transform(cluster: Cluster) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster.port}/api/v2/monitor/health", timeout=10) as response:
        health = json.load(response)
    assert health["metadatabase"]["status"] == "healthy"

    for dag_id in pipeline_dag_ids():
        cluster.airflow("dags", "unpause", dag_id)
    # A bound on a hang, not a timing: on 2 busy cores (the Celery module beside this one) a transform has taken
    # 13 minutes, and an hour boundary meanwhile adds an extract run and a second transform.
    runs = _pipeline_runs(cluster.metadata, deadline=time.monotonic() + 2400)
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
        http_get(f"{api}/crm/health")
    assert refused.value.code == 401, "no page without a login"
    page = http_get(f"{api}/crm/health", cluster.token())
    assert "<h1>CRM pipeline health</h1>" in page and "every stream is fresh" in page, page[:2000]
    plugins = json.loads(http_get(f"{api}/api/v2/plugins", cluster.token()))
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
    quiet_transform(cluster)
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
    http_json(
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
    quiet_transform(cluster)
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
    assert len(cluster.alerts(f"[crm] {HOURLY}: airbyte_sync[", failed)[0]) == 1, "and no second one, however named"
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
    # It names the last failure alerted: this test's run, or the run the test before marked failed in the UI when
    # that task's failure callback (the DAG processor runs it, without the rendered map index, seconds to minutes
    # later on a busy machine) came last.
    found = re.search(r"recovered from: (airbyte_sync\[[^\]]+\]) in (\S+)", webhooks[0])
    assert found, webhooks[0]
    assert found[2] == failed or cluster.alerts(f"[crm] {HOURLY}: {found[1]} failed", found[2])[0], webhooks[0]
    # The incident is closed: another good run sends nothing more. The DAG processor runs the run's success
    # callback a few seconds after the run ends; it logs that it found no incident. Its job waits queued (the
    # platform's workers busy) when the real triggerer first reads it: the deferred task keeps waiting.
    cluster.double.mode, cluster.double.queued_reads = "queued", 1
    again, state = cluster.trigger(HOURLY, conf)
    assert state == "success"
    job = cluster.double.jobs[max(cluster.double.jobs)]
    assert job.status == "succeeded" and job.reads >= 2, f"job {job.job_id} was read {job.reads} times"
    quiet = f"{HOURLY}: {again} succeeded with no open incident, so no recovery alert"
    cluster.wait(lambda: quiet in cluster.dag_processor_log(), 120, f"the success callback of {again}")
    assert cluster.alerts(f"[crm] {HOURLY}: recovered, {again}") == ([], [])


def test_down_stops_every_process_up_started(cluster: Cluster) -> None:
    pids = [json.loads(p.read_text()) for p in cluster.run_dir.glob("*.json")]
    down = crm(cluster.env, "down")
    cluster.stopped.append(down.stdout)
    assert down.returncode == 0
    assert "stopped: api-server, scheduler, dag-processor, triggerer" in down.stdout
    assert len(pids) == 4
    assert all(_start_time(p["pid"]) != p["started"] for p in pids), "every component process is gone"


def _up_keeps_its_secrets_private(local_dir: Path, printed: str) -> None:
    """Issue 28's lesser leaks on a single-host ``make up``: the admin password is not printed, its file and the
    components' logs are the user's only, ``.local`` too, and no log server listens (all read one log folder)."""
    passwords = local_dir / "airflow" / "simple_auth_manager_passwords.json.generated"
    assert json.loads(passwords.read_text())["admin"] not in printed
    for path in (passwords, local_dir / "airflow" / "logs" / "components" / "api-server.log"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(local_dir.stat().st_mode) == (0o711 if os.getuid() == 0 else 0o700)  # cli.py says why
    log_ports = {8793, 8794}  # Airflow's worker and triggerer log servers ([logging] *_log_server_port)
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":  # LISTEN
                listening.add(int(local.rsplit(":", 1)[1], 16))
    assert not listening & log_ports, f"a log server listens: {sorted(listening & log_ports)}"


def quiet_transform(cluster: Cluster) -> None:
    """Pause the transform once no run of it is left: its asset trigger is the first test's. Left running, each
    extract run here would start a transform, which holds raw while it reads, so the next Airbyte sync waits for
    it (the transform lease) and these tests wait minutes for what they do not check.

    Its runs end first, then it is paused: the scheduler does not advance a paused DAG's runs, so a run caught by
    the pause (one an hourly run's assets started at the hour) would hold raw for good."""
    for _ in range(5):
        cluster.wait(lambda: cluster.ended(TRANSFORM_DAG_ID), 1200, f"{TRANSFORM_DAG_ID}'s runs to end")
        cluster.airflow("dags", "pause", TRANSFORM_DAG_ID)
        if cluster.ended(TRANSFORM_DAG_ID):
            return
        cluster.airflow("dags", "unpause", TRANSFORM_DAG_ID)  # a run started meanwhile: let it end, then again
    raise AssertionError(f"{TRANSFORM_DAG_ID} kept starting runs: {cluster.runs(TRANSFORM_DAG_ID)}")


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
