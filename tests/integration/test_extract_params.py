"""An extract DAG's params on a real `airflow dags test`: refused when invalid before any task runs, a dry run that
writes nothing, a subset of streams, and a backfill window that delivers history again without moving the clock."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from conftest import AirflowRun

from crm_pipeline.orchestration.extract import extract_dag_id
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration

DAG = extract_dag_id("hourly")
VARIABLES = {"crm_simulator_seed": "5", "crm_simulator_scale": "XS", "crm_simulator_faults": ""}
DEALS = {"streams": ["hubspot.deals"]}


def _run(local_airflow, warehouse: WarehouseUrl, conf: dict[str, Any]) -> tuple[AirflowRun, dict[str, str | None]]:
    run = local_airflow.dags_test(DAG, warehouse, conf=conf, **VARIABLES)
    return run, local_airflow.task_states(DAG, run.run_id) if run.run_id else {}


def _runs(local_airflow) -> int:
    with psycopg.connect(local_airflow.metadata.libpq()) as conn:
        return conn.execute("select count(*) from dag_run where dag_id = %s", (DAG,)).fetchone()[0]  # type: ignore[index]


@pytest.mark.parametrize(
    ("conf", "param"),
    [
        ({"streams": ["hubspot.contacts"]}, "streams"),  # a stream, but not one of this DAG's
        ({"window_start": "2026-01-01"}, "window_start"),  # no time, no time zone
        ({"dry_run": "yes"}, "dry_run"),
    ],
)
def test_an_invalid_param_is_refused_before_any_task_runs(local_airflow, warehouse, conf, param) -> None:
    before = _runs(local_airflow)
    run = local_airflow.dags_test(DAG, warehouse, conf=conf, **VARIABLES)
    assert run.returncode != 0
    assert f"Invalid input for param {param}:" in run.log
    assert _runs(local_airflow) == before, "no run was created, so no task ran"


def test_a_dry_run_plans_and_writes_nothing(local_airflow, warehouse) -> None:
    run, states = _run(local_airflow, warehouse, {"dry_run": True})
    assert run.returncode == 0, run.log[-3000:]
    assert states.pop("plan") == "success"
    assert set(states.values()) == {"skipped"}, states
    plan = (
        "airbyte_connection_hubspot_hourly: hubspot.deals, hubspot.engagements, hubspot.deals_archived"
        " through the local simulator"
    )
    assert plan in run.log
    with psycopg.connect(warehouse.libpq()) as conn:
        assert conn.execute("select to_regclass('raw_hubspot.deals')").fetchone() == (None,)


def test_in_airbyte_mode_an_empty_connection_variable_fails_the_first_task(local_airflow, warehouse) -> None:
    """Fails closed (source_mode.py): Airbyte is the default mode, so a connection whose Variable is empty stops
    the run at its first task, naming the Variable, and the simulator writes nothing."""
    run = local_airflow.dags_test(DAG, warehouse, {"CRM_SOURCE_MODE": "airbyte"}, conf=DEALS, **VARIABLES)
    states = local_airflow.task_states(DAG, run.run_id)
    assert run.returncode != 0
    assert states["plan"] == "failed" and states["held_back"] == "failed", "the run shows red"
    syncs = {task: state for task, state in states.items() if task.endswith(("_sync", "_streams", "_connections"))}
    assert set(syncs.values()) == {"upstream_failed"}, f"no sync ran: {syncs}"
    assert "no Airbyte connection id in the Variable(s) airbyte_connection_hubspot_hourly" in run.log
    with psycopg.connect(warehouse.libpq()) as conn:
        assert conn.execute("select to_regclass('raw_hubspot.deals')").fetchone() == (None,)


def test_a_subset_of_streams_then_a_backfill_window_of_it(local_airflow, warehouse) -> None:
    first, states = _run(local_airflow, warehouse, DEALS)
    assert first.returncode == 0, first.log[-3000:]
    assert {t for t, state in states.items() if t.startswith("simulate_sync")} == {"simulate_sync[hubspot.deals]"}
    assert states["gate__hubspot__deals"] == "success" and states["gate__salesforce__Task"] == "skipped"
    with psycopg.connect(warehouse.libpq()) as conn:
        clock = conn.execute("select syncs, synced_until from crm_simulator.sync_state").fetchall()
        deals = conn.execute("select count(*), count(distinct id) from raw_hubspot.deals").fetchone()

    window = {"window_start": "2025-12-01T00:00:00Z", "window_end": "2026-01-01T00:00:00+00:00"}
    backfill, states = _run(local_airflow, warehouse, {**DEALS, **window})
    assert backfill.returncode == 0, backfill.log[-3000:]
    assert states["gate__hubspot__deals"] == "success"
    with psycopg.connect(warehouse.libpq()) as conn:
        assert conn.execute("select syncs, synced_until from crm_simulator.sync_state").fetchall() == clock
        assert conn.execute("select count(*), count(distinct id) from raw_hubspot.deals").fetchone() == deals, (
            "a deduplicated stream takes the backfilled records in place: no duplicates"
        )
        batches = conn.execute(
            "select run_id, rows_loaded, verdict from crm_audit.stream_runs where stream = 'hubspot.deals'"
            " order by admitted_at"
        ).fetchall()
    assert [(run_id, verdict) for run_id, _, verdict in batches] == [
        (first.run_id, "passed"),
        (backfill.run_id, "passed"),
    ]
    assert 0 < batches[1][1] < batches[0][1], "December's changes, a part of the history"

    future = {"window_start": "2026-01-01T00:00:00Z", "window_end": "2027-01-01T00:00:00Z"}
    refused, states = _run(local_airflow, warehouse, {**DEALS, **future})
    assert refused.returncode != 0
    assert states["simulate_sync[hubspot.deals]"] == "failed"
    assert states["held_back"] == "failed" and "no batch (their syncs failed): hubspot.deals" in refused.log
    assert "hubspot.deals: backfill window_end 2027-01-01T00:00:00+00:00 is after the stream's synced history" in (
        refused.log
    )
