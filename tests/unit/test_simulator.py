"""The simulated CRM is deterministic, and incremental windows add up to the full state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.sources.simulator.hubspot import changed_records
from crm_pipeline.sources.simulator.sync import next_window_end
from crm_pipeline.sources.simulator.world import EPOCH, World


def records(world: World, stream: str, since, until) -> list[dict]:
    return [record for _, record in changed_records(world, stream, since, until, 0.05)]


def test_same_seed_same_company_other_seed_other_company() -> None:
    first = records(World(7, "XS"), "contacts", None, EPOCH)
    again = records(World(7, "XS"), "contacts", None, EPOCH)
    other = records(World(8, "XS"), "contacts", None, EPOCH)
    assert first == again
    assert [r["properties_email"] for r in first] != [r["properties_email"] for r in other]


def test_incremental_windows_replay_to_the_full_snapshot() -> None:
    """Applying each window's records by key (what dedup does) ends in the full snapshot at the last instant."""
    world = World(3, "S")
    state = {r["id"]: r for r in records(world, "deals", None, EPOCH)}
    since = EPOCH
    for _ in range(48):
        until = since + timedelta(hours=6)
        for record in records(world, "deals", since, until):
            assert since < record["updatedAt"] <= until
            state[record["id"]] = record
        since = until
    snapshot = {r["id"]: r for r in records(world, "deals", None, since)}
    # Archived deals are not emitted (as HubSpot's search API does not), so the replay holds a superset.
    assert set(snapshot) <= set(state)
    assert all(state[key] == snapshot[key] for key in snapshot)
    assert len(set(state) - set(snapshot)) > 0, "some deals were archived in 12 simulated days"


def test_records_have_the_catalogue_columns_and_merges_show_on_the_survivor() -> None:
    from crm_pipeline.catalogue import default_catalogue

    world = World(7, "S")
    contacts = records(world, "contacts", None, EPOCH + timedelta(days=60))
    columns = set(default_catalogue().get("hubspot.contacts").columns)
    assert set(contacts[0]) == columns
    survivors = [c for c in contacts if c["properties_hs_merged_object_ids"]]
    assert survivors, "1% of contacts merge: some survivors exist at scale S"
    merged_away = {m for c in survivors for m in c["properties_hs_merged_object_ids"].split(";")}
    assert merged_away.isdisjoint(c["id"] for c in contacts), "merged-away contacts are no longer emitted"


def test_deal_amounts_are_numbers_and_stages_known() -> None:
    deals = records(World(7, "XS"), "deals", None, EPOCH)
    assert all(isinstance(d["properties_amount"], float) and d["properties_amount"] > 0 for d in deals)
    assert {d["properties_dealstage"] for d in deals} <= {
        "appointmentscheduled",
        "qualifiedtobuy",
        "presentationscheduled",
        "decisionmakerboughtin",
        "contractsent",
        "closedwon",
        "closedlost",
    }


def test_the_simulated_clock_follows_a_cron_schedule() -> None:
    """A sync's window ends where the stream's schedule next fires: an hourly cron brings an hour, a weekday cron
    steps over the weekend (before, every cron stream advanced a day a sync)."""
    deals = default_catalogue().get("hubspot.deals")
    friday_6am = datetime(2026, 1, 9, 6, tzinfo=UTC)
    assert next_window_end(deals, friday_6am) == friday_6am + timedelta(hours=1)  # "1h": one interval on
    hourly = deals.model_copy(update={"frequency": "0 * * * *"})
    assert next_window_end(hourly, friday_6am) == friday_6am + timedelta(hours=1)
    weekdays = deals.model_copy(update={"frequency": "0 6 * * 1-5"})
    assert next_window_end(weekdays, friday_6am) == datetime(2026, 1, 12, 6, tzinfo=UTC)


def test_the_recycle_bin_holds_exactly_the_deals_that_left_the_deals_stream() -> None:
    """``deals_archived``: a deal archived in a window appears there, with its archival time, and no longer among
    the live deals; the first sync brings the bin as it is (90 days of archivals), and nothing older."""
    world = World(3, "S")
    since, until = EPOCH, EPOCH + timedelta(days=12)
    live_before = {r["id"] for r in records(world, "deals", None, since)}
    live_after = {r["id"] for r in records(world, "deals", None, until)}
    binned = records(world, "deals_archived", since, until)
    assert binned and all(r["archived"] and since < r["archivedAt"] <= until for r in binned)
    assert all(r["updatedAt"] == r["archivedAt"] and r["companies"] is None for r in binned)
    binned_ids = {r["id"] for r in binned}
    assert live_before - live_after <= binned_ids, "every deal that left the deals stream is in the bin"
    assert binned_ids.isdisjoint(live_after), "and none that is still live"
    first = records(world, "deals_archived", None, EPOCH)
    assert first and all(EPOCH - timedelta(days=90) < r["archivedAt"] <= EPOCH for r in first)
    assert set(default_catalogue().get("hubspot.deals_archived").columns) == set(binned[0])
