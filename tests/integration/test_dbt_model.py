"""The dbt model on real data: marts reconcile with raw, identities match the simulator's truth, the incremental
path equals a full refresh, the destination's schema changes still build, and an analyst's staging change
reaches the marts.

Runs bare ``dbt build`` (the same project Cosmos renders) against simulated syncs written by the simulator into a
database of its own. ``CRM_TEST_SCALE=M make integration`` runs it at scale M (S in CI).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import _drop_database
from dbt_runs import build_and_publish, checksum, dbt, sync_all

from crm_pipeline.paths import DBT_PROJECT_DIR
from crm_pipeline.quality.identity import score_identity
from crm_pipeline.quality.reconcile import reconcile
from crm_pipeline.warehouse.locate import ensure_database
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration

INCREMENTAL_MARTS = {"fct_activities": "activity_key", "fct_opportunity_stage_history": "stage_entry_key"}


@pytest.fixture(scope="module")
def modelled(server: WarehouseUrl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WarehouseUrl, Path]]:
    """A warehouse after one historical sync of every stream and a first ``dbt build``."""
    name = f"crm_dbt_{uuid.uuid4().hex[:8]}"
    ensure_database(server, name)
    warehouse, target = server.with_database(name), tmp_path_factory.mktemp("dbt_target")
    try:
        sync_all(warehouse)
        build_and_publish(warehouse, target)
        yield warehouse, target
    finally:
        _drop_database(server, name)


def test_marts_reconcile_with_raw_to_the_cent(modelled) -> None:
    warehouse, _ = modelled
    with psycopg.connect(warehouse.libpq()) as conn:
        figures = reconcile(conn)
    assert [f.figure for f in figures if f.raw == 0] == [], "every figure has something to reconcile"
    assert {f.figure: f.difference for f in figures if f.difference != 0} == {}


@pytest.mark.parametrize("kind", ["contact", "company", "owner"])
def test_identity_resolution_matches_the_ground_truth(modelled, kind: str) -> None:
    warehouse, _ = modelled
    with psycopg.connect(warehouse.libpq()) as conn:
        score = score_identity(conn, kind)
    assert score.scored == score.records, "every resolved record is known to the simulator"
    assert score.true_pairs > 0, "the two CRMs share entities to find"
    assert score.precision >= 0.99, score
    assert score.recall >= 0.99, score


def test_the_incremental_path_equals_a_full_refresh(modelled) -> None:
    """Two more syncs (updates, deletes, late and duplicate rows), an incremental build, then a full refresh."""
    warehouse, target = modelled
    with psycopg.connect(warehouse.libpq()) as conn:
        before = {table: checksum(conn, table, key) for table, key in INCREMENTAL_MARTS.items()}
    sync_all(warehouse)
    sync_all(warehouse)
    # marts_build now holds no marts (the first publish had nothing to swap back); build, publish, then build
    # again: that build's incremental marts start one publish behind, as they do in every steady-state run.
    build_and_publish(warehouse, target)
    sync_all(warehouse)
    delete_at_source(warehouse)
    build_and_publish(warehouse, target)
    with psycopg.connect(warehouse.libpq()) as conn:
        incremental = {table: checksum(conn, table, key) for table, key in INCREMENTAL_MARTS.items()}
        assert {f.figure: f.difference for f in reconcile(conn) if f.difference != 0} == {}
    assert incremental != before, "the syncs changed something for the incremental models to pick up"

    build_and_publish(warehouse, target, "--full-refresh")
    with psycopg.connect(warehouse.libpq()) as conn:
        full = {table: checksum(conn, table, key) for table, key in INCREMENTAL_MARTS.items()}
    assert full == incremental


def delete_at_source(warehouse: WarehouseUrl) -> None:
    """A Salesforce task and opportunity deleted (queryAll delivers them again with IsDeleted), a HubSpot engagement
    deactivated, as the connectors' next syncs would write them: the incremental marts must drop them too."""
    with psycopg.connect(warehouse.libpq()) as conn:
        for table in ('raw_salesforce."Task"', 'raw_salesforce."Opportunity"'):
            conn.execute(
                f'update {table} set "IsDeleted" = true, "SystemModstamp" = now(), _airbyte_extracted_at = now()'
                f' where "Id" = (select min("Id") from {table} where not "IsDeleted")'
            )
        conn.execute(
            "update raw_hubspot.engagements set active = false, _airbyte_extracted_at = now(),"
            ' "lastUpdated" = "lastUpdated" + 1 where id = (select min(id) from raw_hubspot.engagements)'
        )


@pytest.fixture
def small_warehouse(warehouse: WarehouseUrl) -> WarehouseUrl:
    sync_all(warehouse, scale="XS")
    return warehouse


def test_raw_columns_dropped_or_retyped_read_in_the_contracts_shape(small_warehouse, tmp_path: Path) -> None:
    """The destination's own schema changes (docs/raw-contract.md): a new column is ignored, a dropped one reads as
    null and a column retyped into text, into jsonb or out of its zone reads back as its contract type, so the
    model builds the same rows."""
    query = "select * from staging.stg_salesforce__accounts order by account_id"
    dbt(small_warehouse, tmp_path, "run", "--select", "stg_salesforce__accounts")
    with psycopg.connect(small_warehouse.libpq(), autocommit=True) as conn:
        before = conn.execute(query).fetchall()
        conn.execute("set time zone 'UTC'")  # the destination's session
        for statement in (
            'add column "Rating" varchar',
            'drop column "Website"',
            'alter column "IsDeleted" type varchar using "IsDeleted"::varchar',
            'alter column "Name" type jsonb using to_jsonb("Name")',
            'alter column "SystemModstamp" type timestamp using "SystemModstamp"::timestamp',
            'alter column "NumberOfEmployees" type varchar using "NumberOfEmployees"::varchar',
        ):
            conn.execute(f'alter table raw_salesforce."Account" {statement}')
    dbt(small_warehouse, tmp_path, "run", "--select", "stg_salesforce__accounts")
    with psycopg.connect(small_warehouse.libpq()) as conn:
        after = conn.execute(query).fetchall()
        columns = [c.name for c in conn.execute(query + " limit 0").description or ()]
    domain = columns.index("account_domain")
    assert len(after) == len(before) > 0
    assert any(row[domain] for row in before) and not any(row[domain] for row in after), "Website reads as null"
    assert [r[:domain] + r[domain + 1 :] for r in after] == [r[:domain] + r[domain + 1 :] for r in before]


def test_an_analysts_staging_change_reaches_the_marts(small_warehouse, tmp_path: Path) -> None:
    """Edit one staging model in a copy of the project, rebuild, and see it in dim_contacts (whose names are
    masked to their first character: the edit lower-cases it)."""
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    query = "select first_name from marts.dim_contacts where is_in_hubspot and not is_in_salesforce"
    build_and_publish(small_warehouse, tmp_path / "before", project=project)
    with psycopg.connect(small_warehouse.libpq()) as conn:
        before = conn.execute(query).fetchall()
    assert any(name[0].isupper() for (name,) in before), "the simulator's names are capitalised"
    model = project / "models" / "staging" / "hubspot" / "stg_hubspot__contacts.sql"
    model.write_text(
        model.read_text().replace(
            "trim(properties_firstname) as first_name", "lower(trim(properties_firstname)) as first_name"
        )
    )
    build_and_publish(small_warehouse, tmp_path / "after", project=project)
    with psycopg.connect(small_warehouse.libpq()) as conn:
        names = conn.execute(query).fetchall()
    assert names and all(name[0] == name[0].lower() and name.endswith("***") for (name,) in names)
