"""The same company and people in both CRMs, spelled differently, with the truth of who is who."""

from __future__ import annotations

from datetime import timedelta

from crm_pipeline.sources.simulator import hubspot, salesforce
from crm_pipeline.sources.simulator.profiles import in_salesforce, is_salesforce_lead
from crm_pipeline.sources.simulator.world import EPOCH, World

WORLD = World(5, "S")


def test_a_part_of_the_companies_and_people_is_in_salesforce() -> None:
    companies = [i for i, _ in salesforce.changed_records(WORLD, "Account", None, EPOCH, 0.05)]
    contacts = [i for i, _ in salesforce.changed_records(WORLD, "Contact", None, EPOCH, 0.05)]
    leads = [i for i, _ in salesforce.changed_records(WORLD, "Lead", None, EPOCH, 0.05)]
    assert 0.4 < len(companies) / WORLD.count("company", EPOCH) < 0.6
    assert 0.3 < len(contacts) / WORLD.count("contact", EPOCH) < 0.5
    assert set(contacts).isdisjoint(leads), "a person is a Salesforce contact or a lead, not both"
    assert all(in_salesforce(WORLD, "contact", i) for i in contacts)
    assert all(is_salesforce_lead(WORLD, i) for i in leads)


def test_the_same_person_differs_only_in_ways_normalisation_removes() -> None:
    hs = dict(hubspot.changed_records(WORLD, "contacts", None, EPOCH, 0.3))
    sf = dict(salesforce.changed_records(WORLD, "Contact", None, EPOCH, 0.3))
    shared = set(hs) & set(sf)
    assert len(shared) > 1000
    raw_differs = sum(hs[i]["properties_email"] != sf[i]["Email"] for i in shared)
    assert raw_differs > len(shared) // 4, "emails differ in case or padding across CRMs"
    assert all(hs[i]["properties_email"].strip().lower() == sf[i]["Email"].strip().lower() for i in shared)


def test_company_names_and_websites_are_spelled_differently() -> None:
    hs = dict(hubspot.changed_records(WORLD, "companies", None, EPOCH, 0.05))
    sf = dict(salesforce.changed_records(WORLD, "Account", None, EPOCH, 0.05))
    shared = set(hs) & set(sf)
    assert sum(hs[i]["properties_name"] != sf[i]["Name"] for i in shared) > len(shared) // 4
    assert any(sf[i]["Website"].startswith("https://www.") for i in shared)


def test_deleted_salesforce_records_return_with_isdeleted() -> None:
    deleted = [
        (i, r)
        for i, r in salesforce.changed_records(WORLD, "Account", None, EPOCH + timedelta(days=400), 0.0)
        if r["IsDeleted"]
    ]
    assert deleted, "1% of accounts are deleted within a year"
    index, record = deleted[0]
    life = WORLD.life("company", index)
    assert record["SystemModstamp"].timestamp() == life.archived
    window = salesforce.changed_records(
        WORLD, "Account", record["SystemModstamp"] - timedelta(hours=1), record["SystemModstamp"], 0.0
    )
    assert (index, record) in list(window), "the deletion is picked up by the incremental window it falls in"


def test_opportunity_history_has_one_row_per_change() -> None:
    rows = [r for _, r in salesforce.changed_records(WORLD, "OpportunityHistory", None, EPOCH, 0.0)]
    by_opportunity: dict[str, list[dict]] = {}
    for row in rows:
        by_opportunity.setdefault(row["OpportunityId"], []).append(row)
    index = 3
    life = WORLD.life("opportunity", index)
    history = by_opportunity[salesforce.sf_id("Opportunity", index)]
    assert len(history) == life.version(EPOCH.timestamp()) + 1
    assert len({r["Id"] for r in rows}) == len(rows)
