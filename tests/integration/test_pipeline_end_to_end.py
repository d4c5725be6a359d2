"""The whole slice on real components: simulator → raw → GX gates → dbt via Cosmos → mart audit.

The expected mart is computed here from the simulator's records with plain Python (normalise, join, sum), not
from SQL, so a wrong staging or mart transformation fails the comparison row by row. A bad batch must fail its
gate and stop everything downstream, leaving the published mart exactly as it was.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.sources.simulator.hubspot import changed_records
from crm_pipeline.sources.simulator.world import EPOCH, World
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration

SEED, SCALE = 11, "S"
VARIABLES = {"crm_simulator_seed": str(SEED), "crm_simulator_scale": SCALE, "crm_simulator_faults": ""}


def expected_dim_contacts() -> dict[str, tuple[Any, ...]]:
    """dim_contacts after the first sync, derived from the simulator's records in Python."""
    world = World(SEED, SCALE)
    companies = {c["id"]: c for _, c in changed_records(world, "companies", None, EPOCH, 0.05)}
    contacts = [c for _, c in changed_records(world, "contacts", None, EPOCH, 0.05)]
    open_deals: dict[str, int] = defaultdict(int)
    won: dict[str, Decimal] = defaultdict(Decimal)
    for _, deal in changed_records(world, "deals", None, EPOCH, 0.05):
        contact_id = deal["contacts"][0]
        if deal["properties_dealstage"] == "closedwon":
            won[contact_id] += Decimal(str(deal["properties_amount"]))
        elif deal["properties_dealstage"] != "closedlost":
            open_deals[contact_id] += 1
    expected = {}
    for contact in contacts:
        company = companies.get(contact["companies"][0]) if contact["companies"] else None
        expected[contact["id"]] = (
            contact["properties_email"].strip().lower(),
            company["properties_name"] if company else None,
            open_deals[contact["id"]],
            won[contact["id"]],
        )
    return expected


def mart_rows(warehouse: WarehouseUrl) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(warehouse.libpq()) as conn:
        rows = conn.execute(
            "select contact_id, email, company_name, open_deal_count, won_amount from marts.dim_contacts"
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def mart_checksum(warehouse: WarehouseUrl) -> str:
    with psycopg.connect(warehouse.libpq()) as conn:
        row = conn.execute("select md5(string_agg(t::text, '|' order by contact_id)) from marts.dim_contacts t")
        return str(row.fetchone()[0])  # type: ignore[index]


def gate_results(warehouse: WarehouseUrl) -> list[tuple[Any, ...]]:
    with psycopg.connect(warehouse.libpq()) as conn:
        return conn.execute(
            "select gate, rule, success, unexpected_count from crm_audit.gate_results order by id"
        ).fetchall()


def test_first_sync_builds_the_expected_mart_through_every_gate(local_airflow, warehouse) -> None:
    run = local_airflow.dags_test("crm_elt", warehouse, **VARIABLES)
    assert run.returncode == 0, run.log[-5000:]

    states = local_airflow.task_states("crm_elt", run.run_id)
    airbyte_path = {t for t in states if t.startswith(("extract.airbyte__", "extract.airbyte_job__"))}
    assert len(airbyte_path) == 4, "two connections, each with an Airbyte task and a job task"
    assert {states[t] for t in airbyte_path} == {"skipped"}, "no connection id configured: the simulator ran"
    assert {s for t, s in states.items() if t not in airbyte_path} == {"success"}, states

    crm_assets = {
        uri: task
        for uri, task in local_airflow.asset_events("crm_elt", run.run_id).items()
        if uri.startswith("airbyte://")
    }
    assert crm_assets == {s.asset_uri: f"extract.gate__{s.source}__{s.stream}" for s in default_catalogue().enabled()}

    expected, actual = expected_dim_contacts(), mart_rows(warehouse)
    assert len(actual) == len(expected) > 9000
    wrong = {k: (actual.get(k), v) for k, v in expected.items() if actual.get(k) != v}
    assert not wrong, f"{len(wrong)} mart rows differ, e.g. {list(wrong.items())[:3]}"

    results = gate_results(warehouse)
    gates = {gate for gate, *_ in results}
    streams = default_catalogue().enabled()
    assert gates == {f"raw__{s.source}__{s.stream}" for s in streams} | {"mart__dim_contacts"}
    assert all(success for _, _, success, _ in results)


def test_a_bad_batch_fails_its_gate_and_leaves_the_mart_untouched(local_airflow, warehouse) -> None:
    first = local_airflow.dags_test("crm_elt", warehouse, **VARIABLES)
    assert first.returncode == 0, first.log[-5000:]
    before = mart_checksum(warehouse)

    fault = '[{"stream": "hubspot.contacts", "kind": "null_primary_key", "sync": 2}]'
    second = local_airflow.dags_test("crm_elt", warehouse, **{**VARIABLES, "crm_simulator_faults": fault})
    assert second.returncode != 0

    states = local_airflow.task_states("crm_elt", second.run_id)
    assert states["extract.gate__hubspot__contacts"] == "failed"
    assert states["extract.gate__hubspot__deals"] == "success", "other streams' gates still run"
    transform = {task: state for task, state in states.items() if task.startswith("transform.")}
    assert transform and set(transform.values()) == {"upstream_failed"}, transform
    assert states["audit_marts"] == "upstream_failed"

    assert mart_checksum(warehouse) == before, "the mart must keep its last good state"
    assets = local_airflow.asset_events("crm_elt", second.run_id)
    assert "airbyte://hubspot/contacts" not in assets, "a stream whose gate failed emits no asset"
    assert assets["airbyte://hubspot/deals"] == "extract.gate__hubspot__deals", "streams that passed still do"
    # Five rows lost their key; contacts sync in append + dedup mode, whose upsert partitions by key as
    # Airbyte's does, so the five null keys land as one row. That row is what the gate must catch.
    failures = [(rule, count) for gate, rule, success, count in gate_results(warehouse) if not success]
    assert failures == [("hubspot.contacts:primary_key_not_null:id", 1)]
    assert "hubspot.contacts:primary_key_not_null:id: 1 unexpected" in second.log
