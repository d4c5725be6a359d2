"""Sync modes and fault kinds on a real PostgreSQL: the raw tables behave as Airbyte's Postgres destination does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from crm_pipeline import source_mode
from crm_pipeline.catalogue import StreamSpec, default_catalogue
from crm_pipeline.quality.rules import raw_rules
from crm_pipeline.sources.raw_tables import SyncBatch, encode_row, prepare_raw_table, temp_table_name, write_batch
from crm_pipeline.sources.simulator.sync import BAD_ROWS, NEW_COLUMN, Fault, run_sync
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _spec(mode: str) -> StreamSpec:
    base = default_catalogue().get("hubspot.owners")
    cursor = None if mode == "full_refresh_overwrite" else "updatedAt"
    return base.model_copy(update={"stream": f"semantics_{mode}", "sync_mode": mode, "cursor_field": cursor})


def _write(
    conn: psycopg.Connection,
    spec: StreamSpec,
    sync_id: int,
    rows: list[tuple[str, datetime, str]],
    *,
    drop_cascade: bool = False,
) -> None:
    """One sync; a full refresh stream's generation is bumped at every job, as the platform does."""
    prepare_raw_table(conn, spec)
    generation = sync_id if spec.sync_mode == "full_refresh_overwrite" else 0
    batch = SyncBatch(sync_id, datetime.now(UTC), generation)
    encoded = [
        encode_row(spec, {"id": key, "updatedAt": at, "email": email}, f"{sync_id}-{n}", batch)
        for n, (key, at, email) in enumerate(rows)
    ]
    write_batch(conn, spec, iter(encoded), generation_id=generation, drop_cascade=drop_cascade)


def _table(conn: psycopg.Connection, spec: StreamSpec) -> list[tuple[Any, ...]]:
    return conn.execute(
        f"select id, email, (_airbyte_meta->>'sync_id')::int from raw_hubspot.\"{spec.stream}\" order by id, email"
    ).fetchall()


def test_full_refresh_overwrite_keeps_only_the_last_sync(warehouse: WarehouseUrl) -> None:
    """The destination's overwrite: a temporary table in the raw schema, swapped in by DROP and RENAME."""
    spec = _spec("full_refresh_overwrite")
    with psycopg.connect(warehouse.libpq()) as conn:
        _write(conn, spec, 1, [("a", T0, "a1"), ("b", T0, "b1")])
        first = conn.execute("select %s::regclass::oid", (f'raw_hubspot."{spec.stream}"',)).fetchone()
        _write(conn, spec, 2, [("b", T0, "b2"), ("c", T0, "c2")])
        assert _table(conn, spec) == [("b", "b2", 2), ("c", "c2", 2)]
        second = conn.execute("select %s::regclass::oid", (f'raw_hubspot."{spec.stream}"',)).fetchone()
        assert first != second, "a new table was renamed in"
        temp = temp_table_name("raw_hubspot", spec.stream)
        assert conn.execute("select to_regclass(%s)", (f"raw_hubspot.{temp}",)).fetchone() == (None,)


def test_incremental_append_keeps_every_row_duplicates_included(warehouse: WarehouseUrl) -> None:
    spec = _spec("incremental_append")
    with psycopg.connect(warehouse.libpq()) as conn:
        _write(conn, spec, 1, [("a", T0, "a1")])
        _write(conn, spec, 2, [("a", T0, "a1"), ("a", T0 + timedelta(hours=1), "a2")])  # at-least-once
        assert _table(conn, spec) == [("a", "a1", 1), ("a", "a1", 2), ("a", "a2", 2)]


def test_append_deduped_keeps_the_newest_row_per_key(warehouse: WarehouseUrl) -> None:
    spec = _spec("incremental_append_deduped")
    with psycopg.connect(warehouse.libpq()) as conn:
        _write(conn, spec, 1, [("a", T0, "a1"), ("b", T0, "b1")])
        # newer a wins; older b (late, out of order) does not overwrite; c is new; a duplicate in one batch collapses
        _write(
            conn,
            spec,
            2,
            [
                ("a", T0 + timedelta(hours=1), "a2"),
                ("b", T0 - timedelta(hours=1), "b0"),
                ("c", T0, "c2"),
                ("c", T0, "c2"),
            ],
        )
        assert _table(conn, spec) == [("a", "a2", 2), ("b", "b1", 1), ("c", "c2", 2)]
        # equal cursor: the later extraction wins
        _write(conn, spec, 3, [("c", T0, "c3")])
        assert _table(conn, spec)[-1] == ("c", "c3", 3)


def _fault_sync(conn: psycopg.Connection, key: str, kind: str) -> int:
    """A clean first sync, then a faulty second one (scale S: every incremental window has rows to corrupt)."""
    spec = default_catalogue().get(key)
    run_sync(conn, spec, seed=3, scale="S")
    result = run_sync(conn, spec, seed=3, scale="S", faults=(Fault(stream=key, kind=kind),))  # type: ignore[arg-type]
    assert result.rows >= BAD_ROWS or kind == "dropped_column"
    return result.sync_id


def _columns(conn: psycopg.Connection, schema: str, table: str) -> dict[str, str]:
    rows = conn.execute(
        "select column_name, data_type from information_schema.columns where table_schema = %s and table_name = %s",
        (schema, table),
    ).fetchall()
    return dict(rows)


@pytest.mark.parametrize(
    ("key", "kind", "query", "expected"),
    [
        ("hubspot.deals", "null_primary_key", "select count(*) from raw_hubspot.deals where id is null", 1),
        (
            "hubspot.engagements",
            "duplicate_primary_key",
            "select count(*) from (select id from raw_hubspot.engagements"
            " where (_airbyte_meta->>'sync_id')::int = (select max((_airbyte_meta->>'sync_id')::int)"
            " from raw_hubspot.engagements) group by id having count(*) > 1) d",
            BAD_ROWS,
        ),
        (
            "salesforce.Contact",
            "malformed_email",
            'select count(*) from raw_salesforce."Contact" where "Email" like \'not-an-email-%%\'',
            BAD_ROWS,
        ),
        (
            "hubspot.deals",
            "negative_amount",
            "select count(*) from raw_hubspot.deals where (properties_amount #>> '{}')::numeric < 0",
            BAD_ROWS,
        ),
        (
            "salesforce.Opportunity",
            "unknown_stage",
            'select count(*) from raw_salesforce."Opportunity" where "StageName" = \'stage_that_does_not_exist\'',
            BAD_ROWS,
        ),
        (
            "salesforce.Contact",
            "orphan_foreign_key",
            'select count(*) from raw_salesforce."Contact" where "AccountId" like \'does-not-exist-%%\'',
            BAD_ROWS,
        ),
    ],
)
def test_row_faults_land_in_the_raw_table(
    warehouse: WarehouseUrl, key: str, kind: str, query: str, expected: int
) -> None:
    with psycopg.connect(warehouse.libpq()) as conn:
        _fault_sync(conn, key, kind)
        assert conn.execute(query).fetchone()[0] == expected  # type: ignore[index]


def test_schema_faults_change_the_table_as_the_destination_would(warehouse: WarehouseUrl) -> None:
    with psycopg.connect(warehouse.libpq()) as conn:
        _fault_sync(conn, "hubspot.companies", "new_column")
        assert NEW_COLUMN in _columns(conn, "raw_hubspot", "companies")
        _fault_sync(conn, "hubspot.deals", "retyped_column")
        assert _columns(conn, "raw_hubspot", "deals")["archived"] == "character varying"
        _fault_sync(conn, "salesforce.Account", "naive_timestamps")
        assert _columns(conn, "raw_salesforce", "Account")["SystemModstamp"] == "timestamp without time zone"
        spec = default_catalogue().get("hubspot.owners")
        _fault_sync(conn, "hubspot.owners", "dropped_column")
        dropped = set(spec.columns) - set(_columns(conn, "raw_hubspot", "owners"))
        assert len(dropped) == 1
        run_sync(conn, spec, seed=3, scale="S")  # the source sends the column again: it is propagated back
        assert dropped <= set(_columns(conn, "raw_hubspot", "owners"))


@pytest.mark.parametrize(
    ("key", "cursor"), [("hubspot.engagements", "lastUpdated"), ("salesforce.OpportunityHistory", "SystemModstamp")]
)
def test_an_append_sync_reads_the_last_cursor_value_again(warehouse: WarehouseUrl, key: str, cursor: str) -> None:
    """Airbyte's inclusive cursor: the next sync asks for ``cursor >= highest value seen``, so the rows at the
    previous sync's highest cursor value arrive again, unchanged, and append mode keeps both copies."""
    spec = default_catalogue().get(key)
    table = f'{spec.raw_schema}."{spec.stream}"'
    with psycopg.connect(warehouse.libpq()) as conn:
        first = run_sync(conn, spec, seed=3, scale="XS")  # the whole history, then the next interval
        run_sync(conn, spec, seed=3, scale="XS")
        by_sync = (
            f'select (_airbyte_meta->>\'sync_id\')::int as sync, "{spec.primary_key[0]}" as id, "{cursor}" as at,'
            f" row_to_json(t)::jsonb - '_airbyte_raw_id' - '_airbyte_extracted_at' - '_airbyte_meta' as body"
            f" from {table} t"
        )
        last_of_first = conn.execute(
            f"with r as ({by_sync}) select id, at, body from r where sync = %s"
            " and at = (select max(at) from r where sync = %s)",
            (first.sync_id, first.sync_id),
        ).fetchall()
        assert last_of_first, "the first sync delivered rows"
        again = conn.execute(
            f"with r as ({by_sync}) select id, at, body from r where sync = %s",
            (first.sync_id + 1,),
        ).fetchall()
        assert set(map(str, last_of_first)) <= set(map(str, again)), "exact duplicates, in the next sync"
        older = conn.execute(
            f"with r as ({by_sync}) select count(*) from r where sync = %s and at < %s",
            (first.sync_id + 1, last_of_first[0][1]),
        ).fetchone()[0]  # type: ignore[index]
        assert older == 0, "nothing before the last cursor value is read again"
        generations = conn.execute(f"select array_agg(distinct _airbyte_generation_id) from {table}").fetchone()
        assert generations == ([0],), "a stream never refreshed has no generation: the platform sends 0"


def test_a_normal_sync_after_a_schema_fault_restores_the_contract(warehouse: WarehouseUrl) -> None:
    """The source sends the contract types again, so the destination changes the columns back with its own
    ``USING`` (a plain cast, in a UTC session): a one-off fault stops its own batch, not every later one (the raw
    gate's contract_column_types reads the table's types), and the values it wrote read as they were meant."""
    deals, account = default_catalogue().get("hubspot.deals"), default_catalogue().get("salesforce.Account")
    with psycopg.connect(warehouse.libpq()) as conn:
        faulted = _fault_sync(conn, "hubspot.deals", "retyped_column")
        _fault_sync(conn, "salesforce.Account", "naive_timestamps")
        naive = conn.execute('select max("SystemModstamp") from raw_salesforce."Account"').fetchone()[0]  # type: ignore[index]
        as_text = dict(
            conn.execute(
                "select id, archived from raw_hubspot.deals where (_airbyte_meta->>'sync_id')::int = %s", (faulted,)
            ).fetchall()
        )
        assert set(as_text.values()) <= {"true", "false", None} and as_text, "the source sent the values as text"
        conn.commit()
        run_sync(conn, deals, seed=3, scale="S")
        run_sync(conn, account, seed=3, scale="S")
        assert _columns(conn, "raw_hubspot", "deals")["archived"] == "boolean"
        assert _columns(conn, "raw_salesforce", "Account")["SystemModstamp"] == "timestamp with time zone"
        back = dict(
            conn.execute("select id, archived::text from raw_hubspot.deals where id = any(%s)", (list(as_text),))
        )
        assert all(back[key] == value for key, value in as_text.items() if value is not None and key in back)
        restored = conn.execute(
            'select max("SystemModstamp") from raw_salesforce."Account" where "SystemModstamp" <= %s',
            (naive.replace(tzinfo=UTC),),
        ).fetchone()[0]  # type: ignore[index]
        assert restored == naive.replace(tzinfo=UTC), "naive timestamps were UTC"
        for spec in (deals, account):  # the raw gate's own rule, over the table
            (types,) = [r for r in raw_rules(spec, datetime.now(UTC)) if r.rule == "contract_column_types"]
            query = types.kwargs["unexpected_rows_query"].replace("{batch}", f'{spec.raw_schema}."{spec.stream}"')
            assert conn.execute(query).fetchall() == [], f"{spec.key}: contract_column_types passes again"


def test_a_value_the_restored_type_cannot_hold_fails_the_sync_and_loses_nothing(warehouse: WarehouseUrl) -> None:
    """The destination casts with ``c::type`` and no fallback: once a retyped property holds free text, changing
    it back fails the statement, so the sync fails, as a real one would, and the table keeps its rows and type
    (docs/operations.md says what an operator does)."""
    deals = default_catalogue().get("hubspot.deals")
    with psycopg.connect(warehouse.libpq()) as conn:
        _fault_sync(conn, "hubspot.deals", "retyped_column")
        conn.execute(
            "update raw_hubspot.deals set archived = 'maybe' where id = (select min(id) from raw_hubspot.deals)"
        )
        conn.commit()
        rows = conn.execute("select count(*) from raw_hubspot.deals").fetchone()
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="boolean"):
            run_sync(conn, deals, seed=3, scale="S")
        conn.rollback()
        assert _columns(conn, "raw_hubspot", "deals")["archived"] == "character varying"
        assert conn.execute("select count(*) from raw_hubspot.deals").fetchone() == rows
        state = conn.execute("select syncs from crm_simulator.sync_state where stream = 'hubspot.deals'").fetchone()
        assert state == (2,), "the failed sync did not move the stream's clock"


def test_the_next_sync_drops_a_column_the_source_no_longer_sends(warehouse: WarehouseUrl) -> None:
    """The destination matches the table to the sync's catalogue: a property that came for one sync goes with the
    next, by ``DROP COLUMN`` (its values with it, as Airbyte does)."""
    companies = default_catalogue().get("hubspot.companies")
    with psycopg.connect(warehouse.libpq()) as conn:
        _fault_sync(conn, "hubspot.companies", "new_column")
        assert NEW_COLUMN in _columns(conn, "raw_hubspot", "companies")
        run_sync(conn, companies, seed=3, scale="S")
        assert NEW_COLUMN not in _columns(conn, "raw_hubspot", "companies")


def test_dedup_stages_its_batch_in_the_raw_schema_and_leaves_nothing_behind(warehouse: WarehouseUrl) -> None:
    """The destination's temporary table lives beside the final one (not in a session's temporary schema), so the
    loader needs nothing beyond the raw schema; it is dropped after the upsert."""
    spec = _spec("incremental_append_deduped")
    temp = temp_table_name("raw_hubspot", spec.stream)
    with psycopg.connect(warehouse.libpq()) as conn:
        conn.execute("create table public.created (identity text)")
        conn.execute(
            "create function public.note_created() returns event_trigger language plpgsql as $$ begin"
            " insert into public.created select object_identity from pg_event_trigger_ddl_commands()"
            " where command_tag = 'CREATE TABLE'; end $$"
        )
        conn.execute(
            "create event trigger note_created on ddl_command_end when tag in ('CREATE TABLE')"
            " execute function public.note_created()"
        )
        conn.commit()
        try:
            _write(conn, spec, 1, [("a", T0, "a1")])
            _write(conn, spec, 2, [("a", T0 + timedelta(hours=1), "a2")])
            created = [row[0] for row in conn.execute("select identity from public.created")]
        finally:
            conn.rollback()
            conn.execute("drop event trigger note_created")
            conn.commit()
        assert created == [f"raw_hubspot.{spec.stream}", f"raw_hubspot.{temp}", f"raw_hubspot.{temp}"]
        assert conn.execute("select to_regclass(%s)", (f"raw_hubspot.{temp}",)).fetchone() == (None,)
        assert _table(conn, spec) == [("a", "a2", 2)]


def test_empty_batch_writes_nothing_but_advances_the_clock(warehouse: WarehouseUrl) -> None:
    spec = default_catalogue().get("hubspot.contacts")
    with psycopg.connect(warehouse.libpq()) as conn:
        first = run_sync(conn, spec, seed=3, scale="XS")
        empty = run_sync(conn, spec, seed=3, scale="XS", faults=(Fault(stream=spec.key, kind="empty_batch"),))
        assert (empty.rows, empty.sync_number, empty.faults) == (0, 2, ("empty_batch",))
        assert empty.window_end == first.window_end + timedelta(hours=6)


def test_identity_ground_truth_links_both_crms(warehouse: WarehouseUrl) -> None:
    with psycopg.connect(warehouse.libpq()) as conn:
        for key in ("hubspot.contacts", "salesforce.Contact", "salesforce.Lead"):
            run_sync(conn, default_catalogue().get(key), seed=3, scale="S")
        sf_with_hubspot_twin, sf_contacts, sf_identified = conn.execute(
            "select count(distinct s.source_id) filter (where h.source_id is not null),"
            ' (select count(*) from raw_salesforce."Contact"),'
            " (select count(*) from crm_simulator.identity where stream = 'Contact')"
            " from crm_simulator.identity s left join crm_simulator.identity h"
            " on h.source = 'hubspot' and h.entity_kind = s.entity_kind and h.entity_index = s.entity_index"
            " where s.source = 'salesforce' and s.stream = 'Contact'"
        ).fetchone()  # type: ignore[misc]
        assert sf_identified == sf_contacts > 1000, "every Salesforce contact has its ground truth"
        # Everyone in Salesforce is in HubSpot too, but for the few HubSpot deleted before the first sync.
        assert 0.95 * sf_contacts < sf_with_hubspot_twin <= sf_contacts


def test_a_view_on_a_raw_table_stops_the_overwrite_unless_drop_cascade_drops_it(warehouse: WarehouseUrl) -> None:
    """What the destination's ``DROP TABLE`` does to a view someone made on a raw table: without ``drop_cascade``
    (its default) the swap fails and the table keeps its last rows; with it, the view goes."""
    spec = _spec("full_refresh_overwrite")
    with psycopg.connect(warehouse.libpq()) as conn:
        _write(conn, spec, 1, [("a", T0, "a1")])
        conn.execute(f'create view public.reads_it as select id, email from raw_hubspot."{spec.stream}"')
        conn.commit()
        with pytest.raises(psycopg.errors.DependentObjectsStillExist, match="depend"):
            _write(conn, spec, 2, [("b", T0, "b2")])
        conn.rollback()
        assert conn.execute("select id, email from public.reads_it").fetchall() == [("a", "a1")]
        _write(conn, spec, 3, [("c", T0, "c3")], drop_cascade=True)
        assert _table(conn, spec) == [("c", "c3", 3)]
        assert conn.execute("select to_regclass('public.reads_it')").fetchone() == (None,)


def test_schema_faults_leave_the_staging_tables_in_place(warehouse: WarehouseUrl) -> None:
    """Staging models are tables built from raw (docs/decisions.md #27): the destination retypes a raw column with
    its own ``ALTER COLUMN ... TYPE``, which a view reading the column would make PostgreSQL refuse, and calls no
    project function first."""
    with psycopg.connect(warehouse.libpq()) as conn:
        spec = default_catalogue().get("hubspot.deals")
        run_sync(conn, spec, seed=3, scale="S")
        conn.execute("create schema staging")
        conn.execute("create table staging.stg_deals as select id, archived from raw_hubspot.deals")
        conn.commit()
        run_sync(conn, spec, seed=3, scale="S", faults=(Fault(stream=spec.key, kind="retyped_column"),))
        assert _columns(conn, "raw_hubspot", "deals")["archived"] == "character varying"
        kept = conn.execute("select count(*) from staging.stg_deals").fetchone()[0]  # type: ignore[index]
        assert kept > 0, "the staging table keeps its rows until the next transform rebuilds it"


def test_a_retried_sync_of_the_same_run_returns_the_committed_batch_and_loads_nothing(warehouse: WarehouseUrl) -> None:
    """A worker that dies after the sync committed leaves a try the scheduler retries: the retry must report the
    batch that landed, not sync the next interval under the same run."""
    spec = default_catalogue().get("hubspot.deals")
    with psycopg.connect(warehouse.libpq(), autocommit=True) as conn:
        first = run_sync(conn, spec, seed=3, scale="XS", audit_run_id="manual__retried")
        rows = conn.execute(f'select count(*) from {spec.raw_schema}."{spec.stream}"').fetchone()
        again = run_sync(conn, spec, seed=3, scale="XS", audit_run_id="manual__retried")
        assert again == first
        assert conn.execute(f'select count(*) from {spec.raw_schema}."{spec.stream}"').fetchone() == rows
        next_run = run_sync(conn, spec, seed=3, scale="XS", audit_run_id="manual__next")
        assert (next_run.sync_number, next_run.window_start) == (2, first.window_end), "another run syncs on"


def test_the_simulator_refuses_a_warehouse_marked_for_airbyte(warehouse: WarehouseUrl) -> None:
    """The grants step marks the warehouse with its source mode (source_mode.py); once marked for Airbyte, the
    simulator writes nothing into it, while Airbyte (here its API double, which plays that part) still does."""
    spec = default_catalogue().get("hubspot.owners")
    with psycopg.connect(warehouse.libpq(), autocommit=True) as conn:
        source_mode.record(conn, source_mode.AIRBYTE)
    with psycopg.connect(warehouse.libpq()) as conn:
        assert source_mode.recorded(conn) == "airbyte"
        with pytest.raises(source_mode.SourceModeError, match="marked it for Airbyte"):
            run_sync(conn, spec, seed=1, scale="XS")
        conn.rollback()
        assert conn.execute("select to_regclass('raw_hubspot.owners')").fetchone() == (None,), "nothing written"
        assert run_sync(conn, spec, seed=1, scale="XS", sync_id=77, as_airbyte=True).rows > 0
