"""The transform lease on a real PostgreSQL: while a transform reads raw (from its cutoff to its publish), syncs
that replace rows (dedup, overwrite), a replay's reset and a quarantine release wait; the transform waits for
those already writing until their batches are judged; and neither side is left waiting by a writer or a run that
died."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from conftest import dag_file, task_states
from dbt_runs import SEED

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.orchestration.defaults import DAGS_TEST_ENVIRONMENT
from crm_pipeline.orchestration.extract import TRANSFORM_DAG_ID, extract_dag_id
from crm_pipeline.quality.quarantine import release as release_quarantine
from crm_pipeline.quality.raw_gate import judge_batch, set_transform_cutoff
from crm_pipeline.sources.simulator.sync import run_sync
from crm_pipeline.warehouse import transform_lease as lease
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration
DEDUP = "hubspot.deals"  # incremental_append_deduped: a sync replaces the versions a transform read
HOUR = timedelta(hours=1)
HOURLY = extract_dag_id("hourly")


def _raw_versions(conn: psycopg.Connection) -> set[tuple[str, str]]:
    """Every deal's raw row: (id, _airbyte_raw_id). A dedup sync swaps the raw id of each record it updates."""
    rows = conn.execute("select id::text, _airbyte_raw_id::text from raw_hubspot.deals").fetchall()
    conn.commit()
    return set(rows)  # type: ignore[arg-type]


def _sync(conn: psycopg.Connection) -> int:
    spec = default_catalogue().get(DEDUP)
    result = run_sync(conn, spec, seed=SEED, scale="XS")
    conn.commit()
    return result.sync_id


def test_a_dedup_sync_waits_while_a_transform_reads_raw_and_lands_after_its_release(warehouse: WarehouseUrl) -> None:
    spec = default_catalogue().get(DEDUP)
    with psycopg.connect(warehouse.libpq()) as conn:
        first = _sync(conn)
        judge_batch(warehouse, conn, spec, first, run_id="extract-1", now=datetime.now(UTC))
        lease.hold(conn, "transform-1")
        lease.wait_for_writes(conn, timeout=timedelta(seconds=5))
        set_transform_cutoff(conn, "transform-1")
        read_by_the_build = _raw_versions(conn)

    landed = threading.Event()
    errors: list[BaseException] = []

    def sync_while_held() -> None:
        try:
            with (
                psycopg.connect(warehouse.libpq()) as other,
                lease.replacing_write(other, "extract-2", [DEDUP], expires_in=HOUR, wait=HOUR, poll=0.2),
            ):
                _sync(other)
                landed.set()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    writer = threading.Thread(target=sync_while_held)
    writer.start()
    time.sleep(3)  # the sync would have landed by now (XS: well under a second)
    with psycopg.connect(warehouse.libpq()) as conn:
        assert not landed.is_set(), "a dedup sync landed while the transform held raw"
        assert _raw_versions(conn) == read_by_the_build, "raw changed under the transform between build and audit"
        assert lease.release(conn, "transform-1")
    writer.join(timeout=60)
    assert not errors, errors
    assert landed.is_set()
    with psycopg.connect(warehouse.libpq()) as conn:
        assert _raw_versions(conn) != read_by_the_build, "the second sync should have replaced some versions"
        assert lease.live_writes(conn) == [], "the sync's registration ended with it"


def test_a_transform_waits_for_a_replacing_sync_already_writing(warehouse: WarehouseUrl) -> None:
    with psycopg.connect(warehouse.libpq()) as writer, psycopg.connect(warehouse.libpq()) as transform:
        lease.begin_write(writer, "extract-1", [DEDUP], expires_in=HOUR, on_session=False)
        waited = threading.Event()

        def transform_run() -> None:
            lease.hold(transform, "transform-1")  # from now on, new replacing writes are refused
            lease.wait_for_writes(transform, timeout=timedelta(seconds=60), poll=0.2)
            waited.set()

        started = threading.Thread(target=transform_run)
        started.start()
        time.sleep(2)
        assert not waited.is_set(), "the transform fixed its cutoff while a replacing sync was still writing"
        with psycopg.connect(warehouse.libpq()) as late:
            with pytest.raises(lease.TransformReading, match="transform-1"):
                lease.begin_write(late, "extract-2", [DEDUP], expires_in=HOUR, on_session=False)
            # The write the transform waits for goes on (a retried sync, a replay's resync after its reset).
            lease.begin_write(late, "extract-1", [DEDUP], expires_in=HOUR, on_session=False)
        assert not waited.is_set()
        lease.end_write(writer, "extract-1", [DEDUP])  # its gate judged the batch
        started.join(timeout=30)
        assert waited.is_set()


def test_writers_refused_by_one_transform_go_before_the_next_one(warehouse: WarehouseUrl) -> None:
    """Transforms back to back (a backfill's batches each start one) must not starve dedup syncs: a writer refused
    by one transform queues, and the next transform waits for it before fixing its cutoff."""
    with psycopg.connect(warehouse.libpq()) as conn:
        lease.hold(conn, "transform-1")
        with pytest.raises(lease.TransformReading):
            lease.begin_write(conn, "extract-queued", [DEDUP], expires_in=HOUR, on_session=False)
        lease.release(conn, "transform-1")
        lease.hold(conn, "transform-2")  # before the refused writer came back
        assert lease.live_writes(conn) == [("extract-queued", DEDUP)], "transform-2 waits for the queued writer"
        with pytest.raises(lease.TransformReading, match="transform-2"):
            lease.begin_write(conn, "extract-late", [DEDUP], expires_in=HOUR, on_session=False)
        lease.begin_write(conn, "extract-queued", [DEDUP], expires_in=HOUR, on_session=False)  # its turn
        # The run that is writing finishes writing: its other streams go on (their gates wait for all of them).
        lease.begin_write(conn, "extract-queued", ["hubspot.companies"], expires_in=HOUR, on_session=False)
        assert lease.live_writes(conn) == [("extract-queued", "hubspot.companies"), ("extract-queued", DEDUP)]
        lease.end_write(conn, "extract-queued")
        assert lease.live_writes(conn) == [], "writers queued after transform-2 took the lease wait for transform-3"


def test_a_writer_or_a_transform_that_died_leaves_nobody_waiting(warehouse: WarehouseUrl) -> None:
    with psycopg.connect(warehouse.libpq()) as conn:
        # A sync killed mid-write: its session is gone, and so is its registration.
        # A CLI write killed mid-way: its session is gone, and so is its registration.
        with psycopg.connect(warehouse.libpq()) as killed:
            lease.begin_write(killed, "crm quarantine release", [DEDUP], expires_in=HOUR, on_session=True)
            assert lease.live_writes(conn) == [("crm quarantine release", DEDUP)]
        # The server ends the closed session's backend a moment later (a bound on a hang, not a timing).
        deadline = time.monotonic() + 30
        while lease.live_writes(conn) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lease.live_writes(conn) == []
        # A run's registration (its gate ends it) lapses if the run dies before that: the sync's and gate's limits.
        lease.begin_write(conn, "extract-1", [DEDUP], expires_in=timedelta(seconds=1), on_session=False)
        assert lease.live_writes(conn) == [("extract-1", DEDUP)]
        time.sleep(1.5)
        assert lease.live_writes(conn) == []
        # A transform that died without its teardown: its lease lapses (and a task breaks it earlier, when the
        # run is no longer active: orchestration/replacing_writes.py).
        lease.hold(conn, "transform-dead", hold_for=timedelta(seconds=1))
        with pytest.raises(lease.TransformReading):
            lease.begin_write(conn, "extract-2", [DEDUP], expires_in=HOUR, on_session=False)
        time.sleep(1.5)
        lease.begin_write(conn, "extract-2", [DEDUP], expires_in=HOUR, on_session=False)
        assert not lease.release(conn, "transform-other"), "only the holder's run releases its lease"


def test_a_quarantine_release_waits_for_the_reading_transform_and_names_it(warehouse: WarehouseUrl) -> None:
    with psycopg.connect(warehouse.libpq()) as conn:
        lease.hold(conn, "scheduled__2026-11-24T10:00:00+00:00")
        with pytest.raises(lease.TransformReading, match=r"scheduled__2026-11-24T10:00:00\+00:00"):
            release_quarantine(conn, DEDUP, 1, wait=timedelta(seconds=1))
        lease.release(conn, "scheduled__2026-11-24T10:00:00+00:00")
        assert release_quarantine(conn, DEDUP, 1, wait=timedelta(seconds=1)) == 0  # nothing was quarantined
        assert lease.live_writes(conn) == []


def test_an_extract_run_reschedules_its_dedup_sync_while_a_transform_holds_raw(local_airflow, warehouse) -> None:
    """Real Airflow (``airflow dags test``): while a queued transform run holds the lease, the hourly extract's
    dedup sync goes ``up_for_reschedule`` (freeing its slot, using no retry) and writes nothing; once the lease is
    given back, the same run syncs, gates and admits. A lease whose run no longer exists is broken."""
    variables = {"crm_simulator_seed": "3", "crm_simulator_scale": "XS", "crm_simulator_faults": ""}
    env = local_airflow.env(warehouse, variables)
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "dags", "reserialize"], env=env, check=True, capture_output=True, timeout=300)
    holding = f"manual__holding_{time.time_ns()}"  # queued for good: no scheduler runs here
    subprocess.run(
        [airflow, "dags", "trigger", TRANSFORM_DAG_ID, "--run-id", holding],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    with psycopg.connect(warehouse.libpq()) as conn:
        lease.hold(conn, holding)

    conf = json.dumps({"streams": [DEDUP]})
    extract = subprocess.Popen(
        [airflow, "dags", "test", HOURLY, "-f", str(dag_file(HOURLY)), "-c", conf],
        env={**env, **DAGS_TEST_ENVIRONMENT},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        sync = f"simulate_sync[{DEDUP}]"
        deadline = time.monotonic() + 300
        while task_states(local_airflow.metadata, HOURLY).get(sync) != "up_for_reschedule":
            assert extract.poll() is None, extract.stdout.read() if extract.stdout else ""
            assert time.monotonic() < deadline, task_states(local_airflow.metadata, HOURLY)
            time.sleep(1)
        with psycopg.connect(warehouse.libpq()) as conn:
            landed = conn.execute("select to_regclass('raw_hubspot.deals') is not null").fetchone()[0]  # type: ignore[index]
            if landed:
                assert conn.execute("select count(*) from raw_hubspot.deals").fetchone() == (0,)
            lease.release(conn, holding)
        log, _ = extract.communicate(timeout=600)
    finally:
        extract.kill()
    assert extract.returncode == 0, log[-3000:]
    assert f"transform run {holding} reads raw until it publishes" in log
    states = task_states(local_airflow.metadata, HOURLY)
    assert states[sync] == "success" and states["admit"] == "success", states
    with psycopg.connect(warehouse.libpq()) as conn:
        assert conn.execute("select count(*) from raw_hubspot.deals").fetchone()[0] > 0  # type: ignore[index]
        assert lease.live_writes(conn) == []
        lease.hold(conn, "manual__a_run_that_is_gone")  # left by a run deleted with its lease still held

    again = local_airflow.dags_test(HOURLY, warehouse, conf={"streams": [DEDUP]}, **variables)
    assert again.returncode == 0, again.log[-3000:]
    assert (
        "transform run manual__a_run_that_is_gone holds raw but is no longer running: breaking its lease" in again.log
    )
