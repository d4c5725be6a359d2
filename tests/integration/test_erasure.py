"""GDPR erasure through the real DAG (``airflow dags test``) on a warehouse built by real syncs, dbt and publishes.

The person chosen exists in both CRMs (the simulator's ground truth says so). The request names them by their
HubSpot id only, so the test also shows that erasure follows the person into Salesforce through their email.
"Every trace" is checked by brute force: every table of every schema, each row as text, searched for the
person's email and, as whole words, for each of their ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import LocalAirflow, scratch_database
from dbt_runs import build_and_publish, sync_all
from psycopg import sql

from crm_pipeline.warehouse import audit_log, pii
from crm_pipeline.warehouse.erasure import ErasureRequestError, erase_person
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration

DAG_ID = "crm_erase_person"


@pytest.fixture(scope="module")
def built(server: WarehouseUrl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarehouseUrl]:
    """Both marts schemas hold everyone: two builds, two publishes."""
    with scratch_database(server, "crm_erase") as warehouse:
        sync_all(warehouse, scale="XS")
        target: Path = tmp_path_factory.mktemp("dbt_erase")
        build_and_publish(warehouse, target)
        build_and_publish(warehouse, target)
        yield warehouse


def person_in_both_crms(conn: psycopg.Connection) -> tuple[str, str, set[str]]:
    """(HubSpot id, email, every source id) of a person with a HubSpot contact and a Salesforce contact."""
    row = conn.execute(
        "select min(source_id) filter (where source = 'hubspot'), array_agg(source_id) from crm_simulator.identity"
        " where entity_kind = 'contact' group by entity_index"
        " having count(distinct source) = 2 and count(*) filter (where stream = 'Contact') > 0"
        " order by entity_index limit 1"
    ).fetchone()
    assert row is not None
    hubspot_id, ids = row
    email = conn.execute(
        "select lower(trim(properties_email)) from raw_hubspot.contacts where id = %s", (hubspot_id,)
    ).fetchone()
    assert email is not None and email[0]
    return hubspot_id, email[0], set(ids)


def traces(conn: psycopg.Connection, email: str, ids: set[str]) -> dict[str, int]:
    """``{schema.table: rows}`` holding the email anywhere (any case), its keyed hash or the contact key made from
    it (what the marts hold, computed here in Python: ``warehouse/pii.py``), or any id as a whole word."""
    pepper = pii.pii_pepper()
    hashes = [pii.pseudonymise(pepper, email), pii.pseudonymise(pepper, f"email:{email}")]
    tables = conn.execute(
        "select table_schema, table_name from information_schema.tables where table_type = 'BASE TABLE'"
        " and table_schema not in ('pg_catalog', 'information_schema')"
    ).fetchall()
    found = {}
    for schema, table in tables:
        row = conn.execute(
            sql.SQL(
                "select count(*) from {} as t where strpos(lower(t::text), %s) > 0 or t::text ~ %s or t::text ~ %s"
            ).format(sql.Identifier(schema, table)),
            (email, r"\m(" + "|".join(sorted(ids)) + r")\M", "|".join(hashes)),
        ).fetchone()
        if row and row[0]:
            found[f"{schema}.{table}"] = row[0]
    return found


def counts(conn: psycopg.Connection) -> dict[str, int]:
    tables = ("marts.dim_contacts", "marts.fct_opportunities", "marts.dim_accounts", "raw_hubspot.deals")
    found = {}
    for table in tables:
        row = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(*table.split(".")))).fetchone()
        found[table] = row[0] if row else 0
    return found


def test_erasure_removes_every_trace_keeps_business_records_and_is_idempotent(
    local_airflow: LocalAirflow, built: WarehouseUrl
) -> None:
    with psycopg.connect(built.libpq(), autocommit=True) as conn:
        hubspot_id, email, ids = person_in_both_crms(conn)
        before = traces(conn, email, ids)
        before_counts = counts(conn)
    for where in ("raw_hubspot.contacts", "raw_salesforce.Contact", "marts.dim_contacts", "marts_build.dim_contacts"):
        assert where in before, f"the person is in {where} to begin with"

    first = local_airflow.dags_test(DAG_ID, built, conf={"crm_id": hubspot_id, "confirm": "erase"})
    assert first.returncode == 0, first.log[-3000:]
    with psycopg.connect(built.libpq(), autocommit=True) as conn:
        assert traces(conn, email, ids) == {}
        after = counts(conn)
        erased = audit_log.entries(conn, "erasure")
    assert after["marts.dim_contacts"] == before_counts["marts.dim_contacts"] - 1, "one person, one row"
    assert {k: v for k, v in after.items() if k != "marts.dim_contacts"} == {
        k: v for k, v in before_counts.items() if k != "marts.dim_contacts"
    }, "deals, opportunities and accounts stay; they only lose the link"
    (entry,) = erased
    assert entry["run_id"] == first.run_id and entry["details"]["identified_by"] == "crm_id"
    assert entry["details"]["records_found"] == len(ids)
    assert entry["details"]["rows_deleted"]["raw_salesforce.Contact"] >= 1, "followed the person into Salesforce"

    second = local_airflow.dags_test(DAG_ID, built, conf={"email": email.upper(), "confirm": "erase"})
    assert second.returncode == 0, second.log[-3000:]
    with psycopg.connect(built.libpq(), autocommit=True) as conn:
        assert counts(conn) == after
        (_, again) = audit_log.entries(conn, "erasure")
    assert again["details"]["changed"] == 0 and again["details"]["records_found"] == 0, "a second run is a no-op"


def test_an_erasure_request_must_name_one_person(built: WarehouseUrl) -> None:
    with psycopg.connect(built.libpq()) as conn:
        for bad, message in (
            ({}, "exactly one of the params email and crm_id"),
            ({"email": "a@example.com", "crm_id": "123"}, "exactly one of the params email and crm_id"),
            ({"email": "not an email"}, "param email"),
            ({"crm_id": "1; drop table x"}, "param crm_id"),
        ):
            with pytest.raises(ErasureRequestError, match=message):
                erase_person(conn, **bad)  # type: ignore[arg-type]
