"""The transform lease on a real PostgreSQL: while a transform reads raw (from its cutoff to its publish), syncs
that replace rows (dedup, overwrite), a replay's reset and a quarantine release wait; the transform waits for
those already writing until their batches are judged; and neither side is left waiting by a writer or a run that
died."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from dbt_runs import SEED

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.quality.quarantine import release as release_quarantine
from crm_pipeline.quality.raw_gate import judge_batch, set_transform_cutoff
from crm_pipeline.sources.simulator.sync import run_sync
from crm_pipeline.warehouse import transform_lease as lease
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration
DEDUP = "hubspot.deals"  # incremental_append_deduped: a sync replaces the versions a transform read
HOUR = timedelta(hours=1)


def _raw_versions(conn: psycopg.Connection) -> set[tuple[str, str]]:
    """Every deal's raw row: (id, _airbyte_raw_id). A dedup sync swaps the raw id of each record it updates."""
    rows = conn.execute("select id::text, _airbyte_raw_id::text from raw_hubspot.deals").fetchall()
    conn.commit()
    return set(rows)  # type: ignore[arg-type]


def _sync_and_judge(conn: psycopg.Connection) -> int:
    spec = default_catalogue().get(DEDUP)
    result = run_sync(conn, spec, seed=SEED, scale="XS")
    conn.commit()
    return result.sync_id


def test_a_dedup_sync_waits_while_a_transform_reads_raw_and_lands_after_its_release(warehouse: WarehouseUrl) -> None:
    spec = default_catalogue().get(DEDUP)
    with psycopg.connect(warehouse.libpq()) as conn:
        first = _sync_and_judge(conn)
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
                _sync_and_judge(other)
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


def test_a_writer_or_a_transform_that_died_leaves_nobody_waiting(warehouse: WarehouseUrl) -> None:
    with psycopg.connect(warehouse.libpq()) as conn:
        # A sync killed mid-write: its session is gone, and so is its registration.
        # A CLI write killed mid-way: its session is gone, and so is its registration.
        with psycopg.connect(warehouse.libpq()) as killed:
            lease.begin_write(killed, "crm quarantine release", [DEDUP], expires_in=HOUR, on_session=True)
            assert lease.live_writes(conn) == [("crm quarantine release", DEDUP)]
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
