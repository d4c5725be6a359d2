"""A record the destination replaced with a version no gate let through stays in the marts at its last judged
version, then moves to the new one once a gate admits it: never neither.

Airbyte's Postgres destination replaces a deduplicated stream's row in place (its upsert) and swaps in a new
table for a full refresh, whoever started the job. Until the batch is judged, and for good when the gate
quarantines it, staging cannot read the new row; the old one is gone from raw (dbt macro ``last_judged``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbt_runs import build_and_publish, sync_all

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.quality.raw_gate import judge_batch
from crm_pipeline.quality.reconcile import reconcile
from crm_pipeline.quality.unjudged import unjudged_sync_ids
from crm_pipeline.sources.raw_tables import SyncBatch, encode_row, write_batch
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration


def _record(conn: psycopg.Connection, table: str, key: str, value: str) -> dict[str, Any]:
    row = conn.execute(f"select to_jsonb(r) from {table} r where {key} = %s", (value,)).fetchone()
    assert row is not None
    return dict(row[0])


def _upsert(conn: psycopg.Connection, key: str, sync_id: int, records: list[dict[str, Any]], generation: int) -> None:
    """Write a batch as the destination would, under a sync id no run started (nothing judges it here)."""
    spec = default_catalogue().get(key)
    batch = SyncBatch(sync_id, datetime.now(UTC), generation)
    rows = [encode_row(spec, record, f"{sync_id}-{n}", batch) for n, record in enumerate(records)]
    write_batch(conn, spec, iter(rows), generation_id=generation)
    conn.commit()


def _judge(warehouse: WarehouseUrl, conn: psycopg.Connection, key: str, sync_id: int) -> str:
    spec = default_catalogue().get(key)
    return judge_batch(warehouse, conn, spec, sync_id, run_id="last-judged", now=datetime.now(UTC)).verdict


def _amounts(conn: psycopg.Connection, ids: list[str]) -> dict[str, Decimal]:
    return dict(
        conn.execute(
            "select source_opportunity_id, amount from marts.fct_opportunities where source_opportunity_id = any(%s)",
            (ids,),
        ).fetchall()
    )


def _stage_labels(conn: psycopg.Connection) -> set[str]:
    return {row[0] for row in conn.execute("select stage_label from staging.stg_hubspot__deal_stages")}


def _assert_reconciles(conn: psycopg.Connection) -> None:
    differences = {r.figure: (r.raw, r.mart) for r in reconcile(conn) if r.difference}
    assert not differences, "the marts reconcile with raw, kept versions included"


def test_a_replaced_record_shows_its_last_judged_version_until_its_new_one_is_admitted(
    warehouse: WarehouseUrl, tmp_path: Path
) -> None:
    sync_all(warehouse, "XS")
    with psycopg.connect(warehouse.libpq()) as conn:
        for spec in default_catalogue().enabled():
            for sync_id in unjudged_sync_ids(conn, spec):
                judge_batch(warehouse, conn, spec, sync_id, run_id="first", now=datetime.now(UTC))
    build_and_publish(warehouse, tmp_path / "first")
    with psycopg.connect(warehouse.libpq()) as conn:
        kept, quarantined = [
            row[0]
            for row in conn.execute(
                "select source_opportunity_id from marts.fct_opportunities where source_system = 'hubspot'"
                " and stage_category = 'open' order by source_opportunity_id limit 2"
            )
        ]
        (opportunity,) = conn.execute(
            "select source_opportunity_id from marts.fct_opportunities where source_system = 'salesforce'"
            " order by source_opportunity_id limit 1"
        ).fetchone()  # type: ignore[misc]
        before = _amounts(conn, [kept, quarantined, opportunity])
        labels_before = _stage_labels(conn)
        _assert_reconciles(conn)

        # The destination upserts new versions (a job started outside Airflow) and swaps in a new pipelines table.
        later = datetime.now(UTC) + timedelta(minutes=1)
        deal = _record(conn, "raw_hubspot.deals", "id", kept) | {"properties_amount": 777777, "updatedAt": str(later)}
        bad = _record(conn, "raw_hubspot.deals", "id", quarantined) | {"properties_amount": -5, "updatedAt": str(later)}
        sf = _record(conn, 'raw_salesforce."Opportunity"', '"Id"', opportunity) | {
            "Amount": 888888,
            "SystemModstamp": str(later),
        }
        pipelines = [
            record
            | {"label": f"{record['label']} (renamed)"}
            | {"stages": [stage | {"label": f"{stage['label']} *"} for stage in record["stages"]]}
            for record in (row[0] for row in conn.execute("select to_jsonb(p) from raw_hubspot.deal_pipelines p"))
        ]
        (generation,) = conn.execute("select max(_airbyte_generation_id) from raw_hubspot.deal_pipelines").fetchone()  # type: ignore[misc]
        _upsert(conn, "hubspot.deals", 8101, [deal], 1)
        _upsert(conn, "hubspot.deals", 8102, [bad], 1)
        _upsert(conn, "salesforce.Opportunity", 8103, [sf], 1)
        _upsert(conn, "hubspot.deal_pipelines", 8104, pipelines, generation + 1)

    # Nothing judged yet: every replaced record is still there, at its last judged version.
    build_and_publish(warehouse, tmp_path / "unjudged")
    with psycopg.connect(warehouse.libpq()) as conn:
        assert _amounts(conn, [kept, quarantined, opportunity]) == before
        assert _stage_labels(conn) == labels_before, "a pipelines table swapped in unjudged keeps the judged stages"
        _assert_reconciles(conn)

        assert _judge(warehouse, conn, "hubspot.deals", 8101) == "passed"
        assert _judge(warehouse, conn, "hubspot.deals", 8102) == "quarantined", "a negative amount is quarantined"
        assert _judge(warehouse, conn, "salesforce.Opportunity", 8103) == "passed"
        assert _judge(warehouse, conn, "hubspot.deal_pipelines", 8104) == "passed"

    # Judged: the admitted versions replace the kept ones; the quarantined one keeps its last judged version.
    build_and_publish(warehouse, tmp_path / "judged")
    with psycopg.connect(warehouse.libpq()) as conn:
        after = _amounts(conn, [kept, quarantined, opportunity])
        assert after == {kept: Decimal(777777), quarantined: before[quarantined], opportunity: Decimal(888888)}
        assert all(label.endswith(" *") for label in _stage_labels(conn))
        _assert_reconciles(conn)

        # The CRM's user fixes the amount; the next sync delivers it and its gate admits it.
        fixed = bad | {"properties_amount": 555, "updatedAt": str(later + timedelta(minutes=1))}
        _upsert(conn, "hubspot.deals", 8105, [fixed], 1)
        assert _judge(warehouse, conn, "hubspot.deals", 8105) == "passed"
    build_and_publish(warehouse, tmp_path / "fixed")
    with psycopg.connect(warehouse.libpq()) as conn:
        assert _amounts(conn, [quarantined]) == {quarantined: Decimal(555)}
        _assert_reconciles(conn)
