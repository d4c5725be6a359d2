"""Write-audit-publish: publishing swaps marts_build in as marts atomically, under concurrent readers."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from crm_pipeline.warehouse.publish import BUILD_SCHEMA, PUBLISHED_SCHEMA, publish_marts, schema_tables
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration

VERSIONS = {(10, 20), (30, 40)}  # (rows of marts.a, rows of marts.b) in each of the two versions


def _build(conn: psycopg.Connection, a: int, b: int) -> None:
    conn.execute(f"create schema {BUILD_SCHEMA}")
    conn.execute(f"create table {BUILD_SCHEMA}.a as select generate_series(1, {a}) as id")
    conn.execute(f"create table {BUILD_SCHEMA}.b as select generate_series(1, {b}) as id")


def test_readers_see_the_old_marts_or_the_new_never_a_mix(warehouse: WarehouseUrl) -> None:
    with psycopg.connect(warehouse.libpq(), autocommit=True) as conn:
        _build(conn, 10, 20)
        publish_marts(conn, "first")
        _build(conn, 30, 40)
    seen: list[tuple[int, int]] = []
    stop = threading.Event()

    def read() -> None:
        with psycopg.connect(warehouse.libpq()) as conn:
            while not stop.is_set():
                with conn.transaction():  # two statements, one transaction: one version for both
                    a = conn.execute(f"select count(*) from {PUBLISHED_SCHEMA}.a").fetchone()[0]  # type: ignore[index]
                    b = conn.execute(f"select count(*) from {PUBLISHED_SCHEMA}.b").fetchone()[0]  # type: ignore[index]
                seen.append((a, b))
                row = conn.execute(
                    f"select (select count(*) from {PUBLISHED_SCHEMA}.a), (select count(*) from {PUBLISHED_SCHEMA}.b)"
                )
                seen.append(tuple(row.fetchone()))  # type: ignore[arg-type]
                conn.commit()

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    publishes = 0
    deadline = time.monotonic() + 4
    with psycopg.connect(warehouse.libpq()) as conn:
        while time.monotonic() < deadline:
            publish_marts(conn, f"swap {publishes}")  # the previous version is now marts_build: swap back and forth
            conn.commit()
            publishes += 1
    stop.set()
    for reader in readers:
        reader.join()

    assert publishes > 10
    assert len(seen) > 100
    assert set(seen) == VERSIONS, f"mixed reads: {set(seen) - VERSIONS}"
    with psycopg.connect(warehouse.libpq()) as conn:
        assert conn.execute("select count(*) from crm_audit.publishes").fetchone()[0] == publishes + 1  # type: ignore[index]


def test_publishing_nothing_fails_and_keeps_the_published_marts(warehouse: WarehouseUrl) -> None:
    with psycopg.connect(warehouse.libpq(), autocommit=True) as conn:
        _build(conn, 10, 20)
        publish_marts(conn)
        with pytest.raises(RuntimeError, match="nothing to publish: schema marts_build has no tables"):
            publish_marts(conn)
        assert schema_tables(conn, PUBLISHED_SCHEMA) == ["a", "b"]
        assert conn.execute(f"select count(*) from {PUBLISHED_SCHEMA}.a").fetchone()[0] == 10  # type: ignore[index]
