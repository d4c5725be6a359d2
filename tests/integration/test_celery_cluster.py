"""`make cluster-up` runs the pipeline on Airflow's distributed engine, and the pipeline survives its faults.

The CeleryExecutor with two Celery workers, a Redis broker (the machine's, or one the project starts), and the
metadata DB and warehouse on the cluster's own embedded PostgreSQL, which a test restarts. In order, on one cluster:

1. a clean pass: every extract DAG once, then the transform; the marts' checksums are the reference;
2. the same pass again on a new, empty warehouse database, with a fault in each run, each recovered from through
   retries: a worker killed (its whole process tree, SIGKILL) while a sync writes rows; PostgreSQL restarted
   while a sync writes rows (the scheduler exits, and its supervisor starts it again); the scheduler killed
   mid-run; a worker killed while a dbt task runs. Killed workers are started again by `make cluster-up`. The
   marts then equal the clean pass's, no sync landed twice and the marts were published whole. To strike a write
   in progress, the test holds the sync's raw table in SHARE mode, so the sync's write into it (the destination's
   upsert from its temporary table) waits until the fault is done;
3. a 4-day backfill of the daily extract, 2 runs at a time, with a transform holding raw in the middle of it:
   every run succeeds, nothing deadlocks, no batch lands twice, no history delivered again changes a mart, and
   no pool ever ran more tasks than its slots;
4. the UI in headless Chromium (Debian's, driven by Playwright): log in, the DAG grid, a Cosmos task group, the
   dbt docs page and the pipeline health page, with screenshots under .local/screenshots/ui/;
5. `make cluster-down` stops everything it started, task processes included.

Only the tests start runs (``[scheduler] use_job_schedule = False``, which also stops asset triggers): a
scheduled hourly sync between the two passes would make them see different data. The heartbeat
timeouts are shortened so a dead worker's tasks are failed (and retried) in half a minute, not Airflow's default five
minutes.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from airflow_cluster import ENDED, crm, dag_runs, mart_checksums, mart_row_counts, most_at_once, wait
from psycopg import sql

from crm_pipeline.browser import browser_page
from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.local_airflow import settings_file
from crm_pipeline.local_airflow.cluster import read_settings, worker_name
from crm_pipeline.local_airflow.processes import ProcessSet, _start_time, kill_tree, process_tree
from crm_pipeline.orchestration.extract import TRANSFORM_DAG_ID, extract_dag_id, pipeline_dag_ids
from crm_pipeline.paths import PROJECT_DIR
from crm_pipeline.sources.raw_tables import prepare_raw_table, table_ident
from crm_pipeline.warehouse.ddl import ensure_schema
from crm_pipeline.warehouse.embedded import EmbeddedWarehouse
from crm_pipeline.warehouse.roles import LOADER

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SCALE = "S"  # at XS a day of history is often empty, which a daily stream's volume rule stops
HOURLY, EVERY_6H, DAILY = (extract_dag_id(c) for c in ("hourly", "every_6h", "daily"))
EXTRACTS = [HOURLY, EVERY_6H, DAILY]
HEARTBEAT_TIMEOUT = 30  # seconds without a task heartbeat before the scheduler fails the try
QUEUED_TIMEOUT = 120  # seconds a task may stay queued (sent to Celery, not started) before it is queued again
# Two waves of 2 runs side by side, a transform started once the first run succeeded: enough to see runs overlap
# and the backfill's own bound hold, the pools' slots shared, syncs waiting for the transform and every day's batch
# once (30 days at 4, then 8 at 4, proved nothing more; docs/testing.md).
BACKFILL_DAYS = 4
BACKFILL_AT_ONCE = 2
BACKFILL_TO = date(2025, 12, 31)  # the last day of history before the simulator's epoch
BACKFILL_FROM = BACKFILL_TO - timedelta(days=BACKFILL_DAYS - 1)
POOL_SLOTS = {pool.name: pool.slots for pool in settings_file.read_settings().pools}  # airflow_settings.yaml


@dataclass
class Cluster:
    env: dict[str, str]
    local_dir: Path
    reference: dict[str, str] | None = None  # the clean pass's mart checksums
    reference_syncs: dict[str, int] | None = None

    @property
    def processes(self) -> ProcessSet:
        return ProcessSet(self.local_dir / "airflow" / "run", self.local_dir / "airflow" / "logs" / "components")

    def url(self, database: str) -> str:
        return EmbeddedWarehouse(self.local_dir / "warehouse").url(database).libpq()

    @property
    def port(self) -> int:
        return int((self.local_dir / "airflow" / "run" / "api-port").read_text())

    @property
    def admin_password(self) -> str:
        generated = self.local_dir / "airflow" / "simple_auth_manager_passwords.json.generated"
        return str(json.loads(generated.read_text())["admin"])

    @property
    def metadata(self) -> str:
        return self.url("airflow")

    @property
    def warehouse(self) -> str:
        return self.url("crm")

    def crm(self, *args: str, timeout: int = 600) -> str:
        done = crm(self.env, *args, timeout=timeout)
        assert done.returncode == 0, f"crm {' '.join(args)}: " + done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        run_id = f"manual__test_{time.time_ns()}"
        self.crm("airflow", "dags", "trigger", dag_id, "-c", json.dumps(conf or {}), "--run-id", run_id)
        return run_id

    def state(self, dag_id: str, run_id: str) -> str | None:
        return {r: s for r, _, s in dag_runs(self.metadata, dag_id)}.get(run_id)

    def finish(self, dag_id: str, run_id: str, seconds: float = 1800) -> str:
        """The run's final state. ``seconds`` bounds a hang, not a timing: beside the LocalExecutor module on two
        busy cores a whole transform has taken 13 minutes."""
        wait(lambda: self.state(dag_id, run_id) in ("success", "failed"), seconds, f"{dag_id} {run_id}")
        return str(self.state(dag_id, run_id))

    def running(self, dag_id: str, run_id: str, where: str = "true") -> list[tuple[str, int, int, int | None]]:
        """(task id, map index, try number, pid) of the run's running task instances matching ``where``."""
        with psycopg.connect(self.metadata) as conn:
            rows = conn.execute(
                "select task_id, map_index, try_number, pid from task_instance"
                f" where dag_id = %s and run_id = %s and state = 'running' and {where}",
                (dag_id, run_id),
            ).fetchall()
        return [tuple(row) for row in rows]  # type: ignore[misc]

    def worker_running(self, pid: int) -> str | None:
        """The Celery worker whose process tree holds ``pid``."""
        for name in self.processes.names():
            entry = self.processes.tracked(name) if name.startswith("celery-worker-") else None
            if entry is not None and pid in process_tree(entry.pid):
                return name
        return None

    def waiting_to_write(self, table: str) -> list[int]:
        """Client ports of the warehouse sessions waiting for a lock to write into ``table`` (``"schema"."name"``)."""
        with psycopg.connect(self.url("crm")) as conn:
            rows = conn.execute(
                "select a.client_port from pg_locks l join pg_stat_activity a on a.pid = l.pid"
                " where l.database = (select oid from pg_database where datname = current_database())"
                " and l.relation = to_regclass(%s) and not l.granted and a.state = 'active'",
                (table,),
            ).fetchall()
        return [port for (port,) in rows if port]

    def kill(self, name: str) -> list[int]:
        entry = self.processes.tracked(name)
        assert entry is not None, f"{name} is not running"
        pids = kill_tree(entry.pid)
        wait(lambda: _start_time(entry.pid) is None, 30, f"{name} to die", every=0.2)
        return pids

    def restart_missing(self) -> str:
        """``make cluster-up`` again: starts only the components that are gone."""
        return self.crm("cluster", "up")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    local_dir = tmp_path_factory.mktemp("celery") / "local"
    env = {
        **os.environ,
        "CRM_LOCAL_DIR": str(local_dir),
        "AIRFLOW_VAR_CRM_SIMULATOR_SCALE": SCALE,
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "3",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
        # A task a killed worker had taken off the queue but not started stays queued until this timeout (Redis
        # hands the message back only after the visibility timeout, hours): Airflow's default is 10 minutes,
        # checked every 2, which one worker fault in three used to add to the fault test.
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": str(QUEUED_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
    }
    for variable in ("CRM_WAREHOUSE_URL", "CRM_DBT_MANIFEST", "CRM_REDIS_URL"):
        env.pop(variable, None)
    cluster = Cluster(env, local_dir)
    try:
        cluster.crm("warehouse", "up")
        up = cluster.crm("cluster", "up")
        assert "Airflow UI: http://127.0.0.1:" in up and "broker: redis://" in up, up
        for dag_id in pipeline_dag_ids():
            cluster.crm("airflow", "dags", "unpause", dag_id)
        yield cluster
    finally:
        crm(env, "cluster", "down")
        crm(env, "warehouse", "down")


def test_cluster_up_starts_two_celery_workers_on_the_checkouts_own_queue(cluster: Cluster) -> None:
    settings = read_settings(cluster.processes.run_dir)
    assert settings is not None and settings.workers == 2
    names = cluster.processes.names()
    assert {worker_name(1), worker_name(2), "scheduler", "api-server", "triggerer", "dag-processor"} <= set(names)
    status = cluster.crm("cluster", "status")
    assert f"queue {settings.queue}" in status and "celery-worker-2: pid" in status
    again = cluster.crm("cluster", "up")
    assert again.count("(already running)") == len([n for n in names if n != "redis"]), again


def test_a_clean_pass_runs_on_both_workers(cluster: Cluster) -> None:
    runs = {dag_id: cluster.trigger(dag_id) for dag_id in EXTRACTS}
    assert {dag_id: cluster.finish(dag_id, run_id) for dag_id, run_id in runs.items()} == dict.fromkeys(
        EXTRACTS, "success"
    )
    assert cluster.finish(TRANSFORM_DAG_ID, cluster.trigger(TRANSFORM_DAG_ID, {"models": "all"})) == "success"
    cluster.reference = mart_checksums(cluster.warehouse)
    rows = mart_row_counts(cluster.warehouse)
    assert set(rows) == set(cluster.reference) and rows and all(rows.values()), f"a mart is empty: {rows}"
    cluster.reference_syncs = _syncs(cluster.warehouse)
    for number in (1, 2):
        log = (cluster.processes.log_dir / f"{worker_name(number)}.log").read_text()
        assert re.search(r"Task execute_workload\[[-0-9a-f]+\] received", log), f"worker {number} ran no task"


def test_after_faults_and_retries_the_marts_equal_the_clean_pass(cluster: Cluster) -> None:
    assert cluster.reference is not None, "the clean pass runs first"
    _new_warehouse_database(cluster)
    killed: list[tuple[str, str, str, int]] = []

    # 1. A worker dies (SIGKILL to its whole tree) while one of its syncs writes rows.
    with _write_held(cluster, "hubspot.companies"):
        run_id = cluster.trigger(DAILY)
        _, worker = _wait_for_write(cluster, DAILY, run_id, "hubspot.companies")
        # Only the held sync is sure to be cut short: the worker's other syncs finish in a fraction of a second at
        # S, and one that reports success between this look and the kill was never retried.
        killed.append(_task_syncing(cluster, DAILY, run_id, "hubspot.companies"))
        cluster.kill(worker)
    assert _started_again(cluster.restart_missing()) == [worker]
    assert cluster.finish(DAILY, run_id) == "success", _states(cluster, DAILY, run_id)

    # 2. PostgreSQL restarts (fast: every session cut) while a sync writes rows.
    with _write_held(cluster, "hubspot.contacts"):
        run_id = cluster.trigger(EVERY_6H)
        _wait_for_write(cluster, EVERY_6H, run_id, "hubspot.contacts")
        cut = _task_syncing(cluster, EVERY_6H, run_id, "hubspot.contacts")
        cluster.crm("warehouse", "restart")
    killed.append(cut)
    assert cluster.finish(EVERY_6H, run_id) == "success", _states(cluster, EVERY_6H, run_id)

    # 3. The scheduler dies (SIGKILL) mid-run; its supervisor starts it again, and it adopts what the workers run.
    run_id = cluster.trigger(HOURLY)
    wait(lambda: cluster.running(HOURLY, run_id), 300, "a running task of the hourly run", every=0.5)
    supervisor = cluster.processes.tracked("scheduler")
    assert supervisor is not None
    (scheduler, *_) = process_tree(supervisor.pid)[1:]
    kill_tree(scheduler)
    wait(lambda: process_tree(supervisor.pid)[1:2] not in ([], [scheduler]), 60, "the scheduler to start again")
    assert cluster.finish(HOURLY, run_id) == "success", _states(cluster, HOURLY, run_id)

    # 4. A worker dies while a dbt task runs on it.
    run_id = cluster.trigger(TRANSFORM_DAG_ID, {"models": "all"})
    wait(lambda: _dbt_task_on_a_worker(cluster, run_id), 600, "a running dbt task", every=0.5)
    worker = _dbt_task_on_a_worker(cluster, run_id)
    assert worker is not None
    running = _tasks_of(cluster, TRANSFORM_DAG_ID, run_id, worker)
    cluster.kill(worker)
    # A dbt task that reported success between the look and the kill was not cut short, and is not retried.
    killed += _not_finished_in_try(cluster, running)
    assert _started_again(cluster.restart_missing()) == [worker]
    assert cluster.finish(TRANSFORM_DAG_ID, run_id, 1800) == "success", _states(cluster, TRANSFORM_DAG_ID, run_id)

    # Each try a fault cut short was retried, and the retry succeeded.
    with psycopg.connect(cluster.metadata) as conn:
        for dag_id, run, task_id, index in killed:
            state, tries = conn.execute(
                "select state, try_number from task_instance where dag_id = %s and run_id = %s and task_id = %s"
                " and map_index = %s",
                (dag_id, run, task_id, index),
            ).fetchone()  # type: ignore[misc]
            assert (state, tries > 1) == ("success", True), (dag_id, task_id, index, state, tries)
    assert mart_checksums(cluster.warehouse) == cluster.reference, "the marts differ from the clean pass's"
    assert _syncs(cluster.warehouse) == cluster.reference_syncs, "a sync landed twice, or one is missing"
    with psycopg.connect(cluster.warehouse) as conn:
        for spec in default_catalogue().enabled():
            table = sql.Identifier(spec.raw_schema, spec.stream)
            query = sql.SQL("select count(*) - count(distinct _airbyte_raw_id) from {}").format(table)
            twice = conn.execute(query).fetchone()[0]  # type: ignore[index]
            assert twice == 0, f"{spec.key}: {twice} raw rows twice"
        published = conn.execute("select run_id from crm_audit.publishes order by id").fetchall()
    assert published == [(run_id,)], f"one whole publish, by the transform that survived: {published}"


def test_a_backfill_runs_side_by_side_within_the_pools_and_changes_no_mart(cluster: Cluster) -> None:
    """``airflow backfill create`` over 4 days of the daily extract, 2 runs at a time (the DAG itself allows one
    scheduled run at a time). Each run delivers its day of history again as a batch of its own, gated. A transform
    runs in the middle of it: it holds raw while it reads, so a replacing sync that starts meanwhile reschedules
    until it publishes (the transform lease; how many did is printed, as it depends on timing, and
    test_transform_lease.py proves the rescheduling itself), and nothing deadlocks. One more transform afterwards
    builds from every batch. History delivered again must leave the published marts exactly as they were.

    The transforms are triggered here, not by the assets: with the scheduler's job schedule off, as in the whole
    module, nothing else starts. (Left to the assets, a transform follows every few backfill runs, each holding raw
    for minutes, and the backfill takes three times as long; the asset trigger itself is the LocalExecutor
    module's test.)"""
    before = mart_checksums(cluster.warehouse)
    cluster.crm(
        "airflow", "backfill", "create", "--dag-id", DAILY, "--from-date", BACKFILL_FROM.isoformat(),
        "--to-date", BACKFILL_TO.isoformat(),
        "--max-active-runs", str(BACKFILL_AT_ONCE),
    )  # fmt: skip
    backfill = lambda: [r for r in dag_runs(cluster.metadata, DAILY) if r[1] == "backfill"]  # noqa: E731
    busiest = dict.fromkeys(POOL_SLOTS, 0)  # the most task instances running in each pool at one sample

    def sample() -> None:
        with psycopg.connect(cluster.metadata) as conn:
            for pool, running in conn.execute(
                "select pool, count(*) from task_instance where state = 'running' group by pool"
            ).fetchall():
                busiest[pool] = max(busiest.get(pool, 0), running)

    def succeeded(at_least: int) -> bool:
        sample()
        return sum(state == "success" for *_, state in backfill()) >= at_least

    wait(lambda: succeeded(1), 1200, backfill, every=1)
    during = cluster.trigger(TRANSFORM_DAG_ID)
    wait(lambda: succeeded(0) and len(backfill()) == BACKFILL_DAYS and all(s in ENDED for *_, s in backfill()), 2400)
    assert {state for _, _, state in backfill()} == {"success"}, backfill()
    assert cluster.finish(TRANSFORM_DAG_ID, during) == "success"
    after = cluster.trigger(TRANSFORM_DAG_ID)
    wait(lambda: succeeded(0) and cluster.state(TRANSFORM_DAG_ID, after) in ENDED, 900, every=1)
    assert cluster.state(TRANSFORM_DAG_ID, after) == "success"
    with psycopg.connect(cluster.metadata) as conn:
        waited = conn.execute(
            "select count(*) from task_reschedule r join task_instance t on t.id = r.ti_id where t.dag_id = %s",
            (DAILY,),
        ).fetchone()[0]  # type: ignore[index]
    print(f"backfill syncs rescheduled while a transform read raw: {waited}")

    with psycopg.connect(cluster.metadata) as conn:
        spans = conn.execute(
            "select start_date, end_date from dag_run where dag_id = %s and run_type = 'backfill'", (DAILY,)
        ).fetchall()
    assert most_at_once(spans) == BACKFILL_AT_ONCE, "backfill runs went side by side, never more than allowed"
    # Sampled, not derived from start and end dates: a sync rescheduled while a transform reads raw keeps its
    # first start date, though it holds no slot while it waits.
    assert all(busiest[pool] <= slots for pool, slots in POOL_SLOTS.items()), f"more than the slots: {busiest}"
    assert busiest["warehouse"] > 1 and busiest["dbt"] > 1, f"the pools' slots were used side by side: {busiest}"

    daily = [s.key for s in default_catalogue().by_cadence()["daily"] if s.sync_mode != "full_refresh_overwrite"]
    with psycopg.connect(cluster.warehouse) as conn:
        # A run's own syncs; a gate may also find and judge a batch a side-by-side run committed before its own
        # gate ran (judging is idempotent), which the finding run audits with source 'found'.
        batches = conn.execute(
            "select stream, count(*), count(distinct sync_id) from crm_audit.stream_runs where run_id = any(%s)"
            " and source <> 'found' group by stream",
            ([run_id for run_id, _, _ in backfill()],),
        ).fetchall()
    assert {stream: (n, distinct) for stream, n, distinct in batches} == {
        s: (BACKFILL_DAYS, BACKFILL_DAYS) for s in daily
    }, "one batch per stream and day, none twice"
    assert mart_checksums(cluster.warehouse) == before, "history delivered again changed the marts"


def test_the_ui_in_headless_chromium(cluster: Cluster) -> None:
    """Log in to the api-server's UI like a person, then the DAG grid, a Cosmos task group opened in it, the dbt
    docs page (Cosmos' plugin) and the pipeline health page (ours). Screenshots go to .local/screenshots/ui/."""
    cluster.crm("dbt", "docs", "generate")  # the site the Cosmos plugin serves, as `make docs` writes it
    api = f"http://127.0.0.1:{cluster.port}"
    shots = PROJECT_DIR / ".local" / "screenshots" / "ui"
    shots.mkdir(parents=True, exist_ok=True)
    with browser_page(width=1440, height=900) as page:
        page.goto(f"{api}/")
        page.wait_for_url("**/auth/login**")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", cluster.admin_password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/auth/login" not in url)

        page.goto(f"{api}/dags/{TRANSFORM_DAG_ID}")
        page.get_by_text("publish_marts", exact=True).first.wait_for()
        page.screenshot(path=str(shots / "dag-grid.png"))
        for group in ("transform", "transform.staging"):  # the DAG's dbt group, then Cosmos' staging layer
            page.locator(f'[aria-label="Toggle group"][data-group-id="{group}"]').click()
        page.get_by_text("stg_hubspot__contacts", exact=False).first.wait_for()
        page.screenshot(path=str(shots / "cosmos-task-group.png"))

        page.goto(f"{api}/cosmos/crm/dbt_docs_index.html#!/model/model.crm.dim_contacts")
        page.get_by_text("dim_contacts", exact=True).first.wait_for()
        page.screenshot(path=str(shots / "dbt-docs.png"))

        page.goto(f"{api}/crm/health")
        page.get_by_role("heading", name="CRM pipeline health").wait_for()
        page.screenshot(path=str(shots / "health.png"), full_page=True)
    for name in ("dag-grid", "cosmos-task-group", "dbt-docs", "health"):
        assert (shots / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cluster_down_stops_everything_it_started(cluster: Cluster) -> None:
    entries = cluster.processes.running()
    trees = [pid for entry in entries for pid in process_tree(entry.pid)]
    # A member that ends between the listing and its start time (a task process, a zombie) has none: not counted.
    started = {pid: start for pid in trees if (start := _start_time(pid)) is not None}
    down = cluster.crm("cluster", "down")
    assert "celery-worker-1" in down and "celery-worker-2" in down and "scheduler" in down, down
    survivors = {pid: _cmdline(pid) for pid, start in started.items() if _start_time(pid) == start}
    assert not survivors, f"outlived cluster-down: {survivors}"
    assert cluster.processes.names() == [] and read_settings(cluster.processes.run_dir) is None


# -- helpers ---------------------------------------------------------------------------------------------------


def _cmdline(pid: int) -> str:
    with suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    return "(gone)"


def _syncs(warehouse: str) -> dict[str, int]:
    with psycopg.connect(warehouse) as conn:
        return dict(conn.execute("select stream, syncs from crm_simulator.sync_state").fetchall())  # type: ignore[arg-type]


def _started_again(up: str) -> list[str]:
    """The components ``crm cluster up`` started, not found running."""
    lines = [line.strip() for line in up.splitlines() if ": pid " in line]
    return [line.split(":")[0] for line in lines if "(already running)" not in line]


def _states(cluster: Cluster, dag_id: str, run_id: str) -> dict[str, tuple[str, int]]:
    with psycopg.connect(cluster.metadata) as conn:
        rows = conn.execute(
            "select task_id, map_index, state, try_number from task_instance where dag_id = %s and run_id = %s",
            (dag_id, run_id),
        ).fetchall()
    return {f"{t}[{i}]": (s, n) for t, i, s, n in rows}


def _new_warehouse_database(cluster: Cluster) -> None:
    """The second pass starts where the first did: a new ``crm`` database (sync ids, verdicts and publishes
    start over with it), its roles' grants applied again."""
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute("drop database crm with (force)")
    cluster.crm("warehouse", "up")
    cluster.crm("warehouse", "grants")


@contextmanager
def _write_held(cluster: Cluster, stream: str) -> Iterator[None]:
    """Hold ``stream``'s raw table in SHARE mode, so that a sync's write into it waits, active, until the block
    ends: the faults strike a write in progress however fast the simulator renders (a whole first sync of a stream
    at scale S takes well under a second, too short to catch by polling)."""
    spec = default_catalogue().get(stream)
    conn = psycopg.connect(cluster.warehouse, autocommit=True)
    try:
        # The schema as the owner makes it, the table as the sync would: by the loader, which must own it.
        ensure_schema(conn, spec.raw_schema)
        conn.execute(sql.SQL("set role {}").format(sql.Identifier(LOADER.name)))
        prepare_raw_table(conn, spec)
        conn.execute("reset role")
        conn.autocommit = False
        conn.execute(sql.SQL("lock table {} in share mode").format(table_ident(spec)))
        yield
    finally:
        with suppress(psycopg.Error):  # a warehouse restart has cut this session already
            conn.rollback()
        conn.close()


def _wait_for_write(cluster: Cluster, dag_id: str, run_id: str, stream: str) -> tuple[int, str]:
    """Wait until the run's sync of ``stream`` waits to write rows into its raw table; (the process writing, the
    worker it runs on)."""
    found: list[tuple[int, str]] = []
    spec = default_catalogue().get(stream)
    table = f'"{spec.raw_schema}"."{spec.stream}"'

    def writing() -> bool:
        for port in cluster.waiting_to_write(table):
            pid = _process_with_local_port(port)
            if pid is not None and (worker := cluster.worker_running(pid)) is not None:
                found.append((pid, worker))
                return True
        assert cluster.state(dag_id, run_id) not in ENDED, "the run ended before a sync wrote"
        return False

    wait(writing, 600, f"a sync of {dag_id} writing rows", every=0.05)
    return found[0]


def _task_syncing(cluster: Cluster, dag_id: str, run_id: str, stream: str) -> tuple[str, str, str, int]:
    """The run's running sync of ``stream``: the only task that writes its raw table, so the one whose write waits
    on the held table. Found by its map index, the stream's place in what ``simulated_streams`` returned (the
    rendered map index is the stream's key only once the task has run)."""
    with psycopg.connect(cluster.metadata) as conn:
        (value,) = conn.execute(
            "select value from xcom where dag_id = %s and run_id = %s and task_id = 'simulated_streams'"
            " and key = 'return_value'",
            (dag_id, run_id),
        ).fetchone()  # type: ignore[misc]
    streams = json.loads(value) if isinstance(value, str) else value
    running = cluster.running(dag_id, run_id, f"task_id = 'simulate_sync' and map_index = {streams.index(stream)}")
    assert len(running) == 1, f"the sync of {stream} in {dag_id} {run_id} is not running: {running}"
    ((task_id, index, _, _),) = running
    return dag_id, run_id, task_id, index


def _process_with_local_port(port: int) -> int | None:
    """The process holding the loopback TCP socket whose local port is ``port`` (from /proc/net/tcp)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(str(fd.readlink()) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


def _tasks_of(cluster: Cluster, dag_id: str, run_id: str, worker: str) -> list[tuple[str, str, str, int, int]]:
    """The run's running task instances whose process belongs to ``worker``, with the try each runs."""
    return [
        (dag_id, run_id, task_id, index, try_number)
        for task_id, index, try_number, pid in cluster.running(dag_id, run_id)
        if pid is not None and cluster.worker_running(pid) == worker
    ]


def _not_finished_in_try(
    cluster: Cluster, tries: list[tuple[str, str, str, int, int]]
) -> list[tuple[str, str, str, int]]:
    """The task instances of ``tries`` that have not succeeded in the try they were seen running."""
    cut = []
    with psycopg.connect(cluster.metadata) as conn:
        for dag_id, run_id, task_id, index, try_number in tries:
            state, now_try = conn.execute(
                "select state, try_number from task_instance where dag_id = %s and run_id = %s and task_id = %s"
                " and map_index = %s",
                (dag_id, run_id, task_id, index),
            ).fetchone()  # type: ignore[misc]
            if (state, now_try) != ("success", try_number):
                cut.append((dag_id, run_id, task_id, index))
    assert cut, f"every task seen running finished before the kill: {tries}"
    return cut


def _dbt_task_on_a_worker(cluster: Cluster, run_id: str) -> str | None:
    for _, _, _, pid in cluster.running(TRANSFORM_DAG_ID, run_id, "pool = 'dbt'"):
        if pid is not None and (worker := cluster.worker_running(pid)) is not None:
            return worker
    return None
