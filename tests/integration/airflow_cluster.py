"""What the tests that run real Airflow components share: the ``crm`` command, waiting, the REST API, and mart
checksums (equal checksums, equal marts)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

CRM = [sys.executable, "-m", "crm_pipeline.cli"]
ENDED = ("success", "failed")

# Columns that say when a row's inputs were last loaded, not what the CRMs hold: loading history again moves them
# by design (Airbyte's dedup keeps the latest extraction of an unchanged record), and the incremental facts use
# them to find rows to reprocess. Everything else must be exactly as a clean run leaves it.
LOAD_TIME_COLUMNS = {("fct_activities", "changed_at"), ("fct_opportunity_stage_history", "loaded_at")}


def crm(env: dict[str, str], *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CRM, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def wait(done: Callable[[], Any], seconds: float, what: object = "", every: float = 2) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"gave up waiting after {seconds} s: {what() if callable(what) else what}"
        time.sleep(every)


def dag_runs(metadata: str, dag_id: str) -> list[tuple[str, str, str]]:
    """(run id, run type, state) of every run of the DAG, oldest first."""
    with psycopg.connect(metadata) as conn:
        rows = conn.execute(
            "select run_id, run_type, state from dag_run where dag_id = %s order by id", (dag_id,)
        ).fetchall()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """The largest number of the (start, end) spans that overlap at one moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans], key=lambda e: (e[0], e[1]))
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def mart_checksums(warehouse: str) -> dict[str, str]:
    """md5 of each published mart's rows (without its load-time columns) in a fixed order."""
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


def mart_row_counts(warehouse: str) -> dict[str, int]:
    """Rows of each published mart."""
    with psycopg.connect(warehouse) as conn:
        tables = [t for (t,) in conn.execute("select tablename from pg_tables where schemaname = 'marts'")]
        query = "select count(*) from {}"
        return {
            t: conn.execute(sql.SQL(query).format(sql.Identifier("marts", t))).fetchone()[0]  # type: ignore[index]
            for t in tables
        }


def http_get(url: str, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310  (loopback URLs built by the tests)
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        return response.read().decode()


def http_json(url: str, method: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310  (loopback URL built by the tests)
        return json.load(response)  # type: ignore[no-any-return]
