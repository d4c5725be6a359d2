"""Records shaped as a real HubSpot portal or Salesforce org sends them, not as our simulator happens to: the gates
let them through and the marts read them right.

A portal has pipelines of its own, with numeric stage ids and its own idea of which stages close a deal (the
connector's ``deal_pipelines`` stream); a deal's association arrays come in no particular order, repeat an id
(once per association type) and are null when there is none; a custom property's name can be longer than
PostgreSQL allows. An org's Salesforce stages are its own too (the ``OpportunityStage`` object). Shapes from
source-hubspot's ``manifest.yaml`` and ``components.py`` and Salesforce's object reference (docs/raw-contract.md).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbt_runs import SEED, build_and_publish

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.quality.raw_gate import judge_batch
from crm_pipeline.quality.reconcile import reconcile
from crm_pipeline.quality.unjudged import unjudged_sync_ids
from crm_pipeline.sources.raw_tables import SyncBatch, encode_row, prepare_raw_table, write_batch
from crm_pipeline.sources.simulator.sync import run_sync
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration

# A custom "Renewals" pipeline as HubSpot returns it: numeric ids, metadata as strings, a lost stage of its own.
RENEWALS = {
    "pipelineId": "87045312",
    "label": "Renewals",
    "displayOrder": 1,
    "active": True,
    "default": False,
    "objectType": "DEAL",
    "objectTypeId": "0-3",
    "createdAt": 1735689600000,
    "updatedAt": 1767225600000,
    "stages": [
        {
            "stageId": "158341672",
            "label": "Renewal due",
            "displayOrder": 0,
            "active": True,
            "metadata": {"isClosed": "false", "probability": "0.6"},
        },
        {
            "stageId": "158341673",
            "label": "Renewed",
            "displayOrder": 1,
            "active": True,
            "metadata": {"isClosed": "true", "probability": "1.0"},
        },
        {
            "stageId": "158341674",
            "label": "Churned",
            "displayOrder": 2,
            "active": True,
            "metadata": {"isClosed": "true", "probability": "0.0"},
        },
    ],
}
# A custom Salesforce stage as the OpportunityStage object returns it (API name differs from its label).
DISCOVERY = {
    "Id": "01J000000000CUSTOM",
    "ApiName": "Discovery_Call",
    "MasterLabel": "Discovery call",
    "IsActive": True,
    "IsClosed": False,
    "IsWon": False,
    "SortOrder": 2,
    "DefaultProbability": 15,
    "ForecastCategory": "Pipeline",
    "ForecastCategoryName": "Pipeline",
    "SystemModstamp": "2026-11-30T09:00:00Z",
}
NOW = datetime.now(UTC)


def _record(conn: psycopg.Connection, table: str, column: str) -> dict[str, Any]:
    """One raw row, any, as the connector's record (to vary the fields a test is about)."""
    (record,) = conn.execute(f'select to_jsonb(r) from {table} r where not "{column}" limit 1').fetchone()  # type: ignore[misc]
    return dict(record)


def _write(conn: psycopg.Connection, key: str, sync_id: int, records: list[dict[str, Any]], generation: int) -> None:
    spec = default_catalogue().get(key)
    prepare_raw_table(conn, spec)
    batch = SyncBatch(sync_id, NOW, generation)
    rows = [encode_row(spec, record, f"{sync_id}-{n}", batch) for n, record in enumerate(records)]
    write_batch(conn, spec, iter(rows), generation_id=generation)
    conn.commit()


def _deal(deal_id: str, stage: str, won: bool, amount: float, companies: list[str] | None) -> dict[str, Any]:
    properties = {"dealname": f"Renewal {deal_id}", "amount": str(amount), "dealstage": stage, "pipeline": "87045312"}
    return {
        "id": deal_id,
        "createdAt": NOW - timedelta(days=30),
        "updatedAt": NOW - timedelta(minutes=5),
        "archived": False,
        "companies": companies,
        "contacts": None,
        "line_items": None,
        "properties": properties,
        "properties_dealname": properties["dealname"],
        "properties_amount": amount,
        "properties_dealstage": stage,
        "properties_pipeline": "87045312",
        "properties_hs_is_closed_won": won,
    }


def test_custom_pipelines_pass_the_gates_and_the_marts_close_deals_by_the_portals_own_stages(
    warehouse: WarehouseUrl, tmp_path: Path
) -> None:
    catalogue = default_catalogue()
    with psycopg.connect(warehouse.libpq()) as conn:
        for spec in catalogue.enabled():
            run_sync(conn, spec, seed=SEED, scale="XS")
            conn.commit()
        default_pipeline = conn.execute(
            'select row_to_json(p)::jsonb from (select "pipelineId", label, "displayOrder", active, "default",'
            ' "objectType", "objectTypeId", "createdAt", "updatedAt", stages from raw_hubspot.deal_pipelines) p'
        ).fetchone()[0]  # type: ignore[index]
        (generation,) = conn.execute("select max(_airbyte_generation_id) from raw_hubspot.deal_pipelines").fetchone()  # type: ignore[misc]
        companies = [row[0] for row in conn.execute("select id from raw_hubspot.companies order by id limit 2")]
        _write(conn, "hubspot.deal_pipelines", 7001, [default_pipeline, RENEWALS], generation + 1)
        # Several companies per deal, one repeated (HubSpot lists an id once per association type), in no order.
        deals = [
            _deal("990001", "158341672", False, 1200.0, [companies[1], companies[0], companies[1]]),
            _deal("990002", "158341673", True, 3400.0, [companies[0]]),
            _deal("990003", "158341674", False, 560.0, None),
        ]
        _write(conn, "hubspot.deals", 7002, deals, 1)
        # The recycle bin: one open deal archived now, one archived before its last change (restored since).
        binned, restored = [
            row[0]
            for row in conn.execute(
                "select id from raw_hubspot.deals where properties_dealstage not in ('closedwon', 'closedlost')"
                " order by id limit 2"
            )
        ]
        changed = conn.execute('select "updatedAt" from raw_hubspot.deals where id = %s', (restored,)).fetchone()[0]  # type: ignore[index]
        bin_rows = [
            {"id": binned, "archived": True, "archivedAt": NOW, "updatedAt": NOW, "createdAt": NOW - timedelta(days=9)},
            {
                "id": restored,
                "archived": True,
                "archivedAt": changed - timedelta(days=1),
                "updatedAt": changed - timedelta(days=1),
            },
        ]
        _write(conn, "hubspot.deals_archived", 7003, bin_rows, 1)
        # A Salesforce org with a stage of its own: an opportunity in it passes the gate once the stage is known.
        _write(conn, "salesforce.OpportunityStage", 7004, [DISCOVERY], 1)
        opportunity = _record(conn, 'raw_salesforce."Opportunity"', "IsClosed") | {
            "Id": "006CUSTOMSTAGE001",
            "StageName": "Discovery_Call",
            "IsClosed": False,
            "IsWon": False,
        }
        _write(conn, "salesforce.Opportunity", 7005, [opportunity], 1)
        verdicts = {
            (spec.key, sync_id): judge_batch(warehouse, conn, spec, sync_id, run_id="portal", now=datetime.now(UTC))
            for spec in catalogue.enabled()
            for sync_id in unjudged_sync_ids(conn, spec)
        }
    assert {v.verdict for v in verdicts.values()} == {"passed"}, {k: v.reason for k, v in verdicts.items()}
    custom = verdicts[("hubspot.deals", 7002)]
    outcomes = {o.name: o for o in custom.report.outcomes}
    assert outcomes["hubspot.deals:foreign_key:properties_dealstage"].success, "custom stage ids are known stages"
    assert custom.quarantined_rows == 0
    salesforce = {o.name: o for o in verdicts[("salesforce.Opportunity", 7005)].report.outcomes}
    assert salesforce["salesforce.Opportunity:foreign_key:StageName"].success, "the org's own stage is known"

    build_and_publish(warehouse, tmp_path / "target")
    with psycopg.connect(warehouse.libpq()) as conn:
        categories = dict(
            conn.execute(
                "select source_opportunity_id, stage_category from marts.fct_opportunities"
                " where source_opportunity_id in ('990001', '990002', '990003')"
            ).fetchall()
        )
        assert categories == {"990001": "open", "990002": "won", "990003": "lost"}
        assert conn.execute(
            "select stage_name, stage_category from marts.fct_opportunities where source_opportunity_id = %s",
            ("006CUSTOMSTAGE001",),
        ).fetchone() == ("Discovery_Call", "open")
        present = {
            row[0]
            for row in conn.execute(
                "select source_opportunity_id from marts.fct_opportunities where source_opportunity_id = any(%s)",
                ([binned, restored],),
            )
        }
        assert present == {restored}, "an archived deal leaves the marts; one restored since stays"
        resolved = dict(
            conn.execute(
                "select source_account_id, account_key from staging.int_accounts__resolved"
                " where source_system = 'hubspot' and source_account_id = any(%s)",
                (companies,),
            ).fetchall()
        )
        primary = min(companies, key=lambda c: (len(c), c))
        bridge = conn.execute(
            "select b.account_key, b.is_primary, o.account_key from marts.bridge_opportunity_accounts b"
            " join marts.fct_opportunities o using (opportunity_key) where o.source_opportunity_id = '990001'"
        ).fetchall()
        assert {key for key, _, _ in bridge} == set(resolved.values()), "every associated company, once"
        assert [key for key, is_primary, _ in bridge if is_primary] == [resolved[primary]]
        assert {fact_key for _, _, fact_key in bridge} == {resolved[primary]}, "the fact carries the primary"
        differences = {r.figure: (r.raw, r.mart) for r in reconcile(conn) if r.difference}
    assert not differences, "the marts reconcile with raw, custom stages included"


def test_a_custom_property_longer_than_postgresql_allows_is_only_a_warning(warehouse: WarehouseUrl) -> None:
    """The destination cuts the name to 54 characters, ``_`` and 8 of its hash; the gate warns of the new column."""
    from crm_pipeline.sources.simulator.sync import NEW_COLUMN, NEW_PROPERTY, Fault

    spec = default_catalogue().get("hubspot.companies")
    with psycopg.connect(warehouse.libpq()) as conn:
        run_sync(conn, spec, seed=SEED, scale="XS")
        result = run_sync(conn, spec, seed=SEED, scale="XS", faults=(Fault(stream=spec.key, kind="new_column"),))
        conn.commit()
        columns = [
            row[0]
            for row in conn.execute(
                "select column_name from information_schema.columns where table_schema = 'raw_hubspot'"
                " and table_name = 'companies' and column_name like 'properties_renewal%'"
            )
        ]
        verdict = judge_batch(warehouse, conn, spec, result.sync_id, run_id="portal", now=datetime.now(UTC))
    assert columns == [NEW_COLUMN] and len(NEW_COLUMN) == 63 and NEW_PROPERTY.startswith(NEW_COLUMN[:54])
    assert verdict.verdict == "passed"
    (warning,) = [o for o in verdict.report.outcomes if not o.success]
    assert (warning.name, warning.severity) == ("hubspot.companies:no_unexpected_columns", "warn")
    assert NEW_COLUMN in json.dumps(warning.observed), "the warning names the column"
