"""The least-privilege roles and the audit log, on real PostgreSQL roles logging in with their own passwords.

One warehouse for the module: the simulated CRMs' first sync (recorded as loads), one batch judged by its gate (so
quarantine has rows), ``crm warehouse grants``, then two dbt builds each published. The second publish swaps the
schemas again, so every check on the analyst also shows that its access followed the marts across the swap.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from conftest import scratch_database
from dbt_runs import build_and_publish
from psycopg import errors, sql

from crm_pipeline import source_mode
from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.quality.quarantine import ensure_quarantine
from crm_pipeline.quality.raw_gate import judge_batch
from crm_pipeline.sources.simulator.sync import Fault, run_sync
from crm_pipeline.warehouse import audit_log, pii
from crm_pipeline.warehouse.ddl import StructureMissing, run_ddl
from crm_pipeline.warehouse.roles import (
    ANALYST,
    AUDITOR,
    LOADER,
    LOADER_AUDIT_TABLES,
    ROLES,
    TRANSFORMER,
    Role,
    apply_grants,
    apply_grants_if_allowed,
    role_url,
)
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration

RUN_ID = "scheduled__roles_test"
GATED_STREAM = "hubspot.contacts"
DIRT = (Fault(stream=GATED_STREAM, kind="malformed_email"),)  # rows for the gate to quarantine


@pytest.fixture(scope="module")
def secured(server: WarehouseUrl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WarehouseUrl]:
    """The pipeline as its tasks run it: the deploy step as the owner, then each step as its least role."""
    with scratch_database(server, "crm_roles") as warehouse:
        with psycopg.connect(warehouse.libpq()) as conn:
            apply_grants(conn)
        with psycopg.connect(role_url(warehouse, LOADER).libpq()) as conn:
            synced = {
                spec.key: run_sync(conn, spec, seed=5, scale="XS", audit_run_id=RUN_ID, faults=DIRT)
                for spec in default_catalogue().enabled()
            }
            conn.commit()
        transformer = role_url(warehouse, TRANSFORMER)
        with psycopg.connect(transformer.libpq()) as conn:
            spec = default_catalogue().get(GATED_STREAM)
            judge_batch(transformer, conn, spec, synced[GATED_STREAM].sync_id, run_id=RUN_ID, now=datetime.now(UTC))
        with psycopg.connect(warehouse.libpq()) as conn:
            apply_grants(conn)  # idempotent: every deploy runs it
        target = tmp_path_factory.mktemp("dbt_roles")
        build_and_publish(transformer, target)
        build_and_publish(transformer, target)
        yield warehouse


def tables(warehouse: WarehouseUrl, *schemas: str) -> list[sql.Identifier]:
    """Every table and view of ``schemas``, as the owner sees them."""
    with psycopg.connect(warehouse.libpq()) as conn:
        rows = conn.execute(
            "select table_schema, table_name from information_schema.tables where table_schema = any(%s) order by 1, 2",
            (list(schemas),),
        ).fetchall()
    return [sql.Identifier(schema, table) for schema, table in rows]


def as_role(warehouse: WarehouseUrl, role: Role) -> psycopg.Connection:
    return psycopg.connect(role_url(warehouse, role).libpq(), autocommit=True)


def denied(conn: psycopg.Connection, statement: sql.Composable | str) -> bool:
    try:
        conn.execute(statement)
    except errors.InsufficientPrivilege:
        return True
    return False


NOT_FOR_ANALYSTS = (
    "raw_hubspot",
    "raw_salesforce",
    "staging",
    "snapshots",
    "marts_build",
    "crm_audit",
    "crm_simulator",
    "crm_private",
)


def test_the_analyst_reads_every_published_mart_and_nothing_else(secured: WarehouseUrl) -> None:
    hidden = tables(secured, *NOT_FOR_ANALYSTS)
    hidden_schemas = {t.as_string().split(".")[0].strip('"') for t in hidden}
    assert hidden_schemas == set(NOT_FOR_ANALYSTS), "every schema the analyst must not see has tables to try"
    marts = tables(secured, "marts")
    assert len(marts) >= 5

    with as_role(secured, ANALYST) as conn:
        readable = [t for t in hidden if not denied(conn, sql.SQL("select 1 from {} limit 1").format(t))]
        assert readable == []
        for mart in marts:
            conn.execute(sql.SQL("select count(*) from {}").format(mart)).fetchone()
        assert denied(conn, sql.SQL("create table marts.analyst_scratch (id int)"))
        assert denied(conn, sql.SQL("delete from {}").format(marts[0]))
        assert denied(conn, "create schema analyst_scratch")


def test_no_published_mart_holds_a_raw_email_phone_or_name(secured: WarehouseUrl) -> None:
    """Every value of every catalogue PII column, as raw holds it and as staging normalises it, searched for in
    every column of every published mart."""
    with psycopg.connect(secured.libpq()) as conn:
        conn.execute("create temporary table pii_values (value text primary key)")
        sources = [
            (spec.raw_schema, spec.stream, column)
            for spec in default_catalogue().enabled()
            for column in spec.pii_columns
        ]
        sources += [
            ("staging", model, column)
            for model, columns in (
                ("int_people__resolved", ("email", "first_name", "last_name", "phone")),
                ("int_owners__resolved", ("email", "first_name", "last_name")),
                ("int_accounts__resolved", ("phone",)),
            )
            for column in columns
        ]
        for schema, table, column in sources:
            conn.execute(
                sql.SQL(
                    "insert into pii_values select v from (select {c}::text as v from {t}"
                    " union select lower(trim({c}::text)) from {t}) as found"
                    " where nullif(v, '') is not null on conflict do nothing"
                ).format(c=sql.Identifier(column), t=sql.Identifier(schema, table))
            )
        (known,) = conn.execute("select count(*) from pii_values").fetchone()  # type: ignore[misc]
        assert known > 500, "the simulator's people have emails, names and phones to look for"
        exposed = {}
        for schema, table, column in conn.execute(
            "select table_schema, table_name, column_name from information_schema.columns"
            " where table_schema = 'marts' or (table_schema, table_name) = ('staging', 'int_people__resolved')"
            " order by 1, 2, 3"
        ).fetchall():
            (hits,) = conn.execute(  # type: ignore[misc]
                sql.SQL("select count(*) from {} where {}::text in (select value from pii_values)").format(
                    sql.Identifier(schema, table), sql.Identifier(column)
                )
            ).fetchone()
            if hits:
                exposed[f"{schema}.{table}.{column}"] = hits
    staging = {k for k in exposed if k.startswith("staging.")}
    assert {f"staging.int_people__resolved.{c}" for c in ("email", "first_name", "last_name")} <= staging, (
        "the search finds raw values where they are (staging, which analysts cannot read)"
    )
    assert {k: v for k, v in exposed.items() if k not in staging} == {}


def test_only_the_transformer_may_hash_and_nobody_reads_the_key(secured: WarehouseUrl) -> None:
    """An analyst who could call the keyed hash could hash a guessed email and look it up."""
    with as_role(secured, TRANSFORMER) as conn:
        (hashed,) = conn.execute("select crm_pii.pseudonymise('a@b.io')").fetchone()  # type: ignore[misc]
        assert hashed == pii.pseudonymise(pii.pii_pepper(), "a@b.io")
        assert denied(conn, "select * from crm_private.pii_key")
    for r in (ANALYST, AUDITOR, LOADER):
        with as_role(secured, r) as conn:
            assert denied(conn, "select crm_pii.pseudonymise('a@b.io')"), r.name
            assert denied(conn, "select * from crm_private.pii_key"), r.name


def test_the_loader_writes_raw_only(secured: WarehouseUrl) -> None:
    raw_table = tables(secured, "raw_hubspot")[0]
    with as_role(secured, LOADER) as conn:
        with conn.transaction(force_rollback=True):
            conn.execute(sql.SQL("delete from {}").format(raw_table))  # allowed; rolled back
        assert denied(conn, sql.SQL("create table marts.loader_scratch (id int)"))
        for mart in tables(secured, "marts", "marts_build", "staging"):
            assert denied(conn, sql.SQL("delete from {}").format(mart)), mart.as_string()
        for audit in tables(secured, "crm_audit"):
            if audit.as_string() not in {f'"crm_audit"."{t}"' for t in LOADER_AUDIT_TABLES}:  # its lease and jobs
                assert denied(conn, sql.SQL("select 1 from {} limit 1").format(audit)), audit.as_string()


def test_the_grants_mark_the_source_mode_and_no_pipeline_role_can_change_it(secured: WarehouseUrl) -> None:
    """The mark the simulator obeys (source_mode.py) is the database's own setting: the loader and the transformer
    try to flip it with their own logins, and PostgreSQL refuses (only the database's owner may alter it)."""
    with psycopg.connect(secured.libpq()) as conn:
        assert source_mode.recorded(conn) == "simulator", "the tests deploy in simulator mode (conftest)"
    flip = sql.SQL("alter database {} set crm.source_mode = 'simulator'").format(sql.Identifier(secured.database))
    for role in (LOADER, TRANSFORMER):
        with as_role(secured, role) as conn:
            assert denied(conn, flip), role.name


def test_the_loader_passes_airbytes_connection_check_and_creates_no_schema(secured: WarehouseUrl) -> None:
    """What Airbyte's Postgres destination (3.x) runs as its user, replayed as ``crm_loader`` (docs/raw-contract.md):
    the connection check in the default schema docs/deploy.md names, and a dedup sync's table beside the raw table.
    The CREATE on the database that the check's ``create schema if not exists`` needs creates nothing for the
    loader: no schema (one named after another role would come first on that role's search_path), no publication."""
    name = f"_airbyte_connection_test_{uuid.uuid4().hex}"
    check = sql.Identifier("raw_hubspot", name)
    with as_role(secured, LOADER) as conn:
        conn.execute("create schema if not exists raw_hubspot")
        with conn.transaction():
            conn.execute(sql.SQL("drop table if exists {}").format(check))
            conn.execute(
                sql.SQL(
                    "create table if not exists {} (_airbyte_raw_id varchar not null, _airbyte_extracted_at"
                    " timestamp with time zone not null, _airbyte_meta jsonb not null, _airbyte_generation_id bigint"
                    " not null, test_key varchar not null)"
                ).format(check)
            )
        index = sql.Identifier(f"idx_extracted_at_{name}")  # PostgreSQL cuts it to 63 characters, as there
        conn.execute(sql.SQL("create index if not exists {} on {} (_airbyte_extracted_at)").format(index, check))
        with conn.cursor().copy(sql.SQL("copy {} from stdin with (format csv)").format(check)) as copy:
            copy.write(f"{uuid.uuid4()},{datetime.now(UTC).isoformat()},{{}},0,test-value\n")
        assert conn.execute(sql.SQL("select count(*) from {}").format(check)).fetchone() == (1,)
        conn.execute(sql.SQL("drop table if exists {}").format(check))

        # A dedup sync: COPY into a table of its own in the raw schema, upsert into the raw table, drop it.
        with conn.transaction(force_rollback=True):
            conn.execute("create table raw_hubspot.owners_airbyte_tmp (like raw_hubspot.owners)")
            conn.execute("insert into raw_hubspot.owners_airbyte_tmp select * from raw_hubspot.owners limit 5")
            conn.execute(
                "update raw_hubspot.owners t set _airbyte_meta = s._airbyte_meta"
                " from raw_hubspot.owners_airbyte_tmp s where t.id = s.id"
            )
            conn.execute("drop table raw_hubspot.owners_airbyte_tmp")

        assert conn.execute("select has_database_privilege(current_database(), 'create')").fetchone() == (True,)
        for statement, created in (
            ("create schema crm_transformer", "crm_transformer"),
            ("create schema if not exists loader_scratch", "loader_scratch"),
            ("create publication loader_everything", "loader_everything"),
        ):
            with pytest.raises(errors.InsufficientPrivilege, match=f"crm_loader may not run .* create {created}"):
                conn.execute(statement)
        created_schemas = conn.execute(
            "select nspname from pg_namespace where nspname in ('crm_transformer', 'loader_scratch')"
        ).fetchall()
        assert created_schemas == []


def test_the_transformer_reads_raw_and_cannot_change_it(secured: WarehouseUrl) -> None:
    with as_role(secured, TRANSFORMER) as conn:
        for raw in tables(secured, "raw_hubspot", "raw_salesforce"):
            conn.execute(sql.SQL("select 1 from {} limit 1").format(raw))
            assert denied(conn, sql.SQL("delete from {}").format(raw)), raw.as_string()
        assert denied(conn, "create table raw_hubspot.transformer_scratch (id int)")
        with conn.transaction(force_rollback=True):
            conn.execute("create table staging.transformer_scratch (id int)")
        assert denied(conn, "insert into crm_audit.audit_log (recorded_by, event, subject) values ('x', 'load', 'y')")


def test_the_auditor_reads_audit_and_quarantine_only(secured: WarehouseUrl) -> None:
    with as_role(secured, AUDITOR) as conn:
        for audit in tables(secured, "crm_audit"):
            conn.execute(sql.SQL("select 1 from {} limit 1").format(audit))
        quarantined = conn.execute("select count(*) from crm_audit.quarantine").fetchone()
        assert quarantined is not None and quarantined[0] > 0, "the gated batch had dirt to quarantine"
        for other in tables(secured, "marts", "raw_hubspot", "staging"):
            assert denied(conn, sql.SQL("select 1 from {} limit 1").format(other)), other.as_string()
        assert denied(conn, "delete from crm_audit.quarantine")


def test_no_role_is_privileged_and_each_owns_only_what_it_builds(secured: WarehouseUrl) -> None:
    names = [r.name for r in ROLES]
    with psycopg.connect(secured.libpq()) as conn:
        flags = conn.execute(
            "select rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolcanlogin from pg_roles"
            " where rolname = any(%s) order by rolname",
            (names,),
        ).fetchall()
        assert flags == [(name, False, False, False, False, True) for name in sorted(names)]
        owned = conn.execute(
            "select r.rolname, n.nspname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
            " join pg_roles r on r.oid = c.relowner where r.rolname = any(%s) and n.nspname <> 'pg_toast'"
            " group by 1, 2 order by 1, 2",
            (names,),
        ).fetchall()
        assert owned == [
            (LOADER.name, "crm_simulator"),
            (LOADER.name, "raw_hubspot"),
            (LOADER.name, "raw_salesforce"),
            *((TRANSFORMER.name, schema) for schema in ("marts_build", "snapshots", "staging")),
        ], "what is published is the owner's, read-only to the transformer (crm_audit.settle_marts)"
        others = conn.execute(
            "select nspname from pg_namespace where nspowner = any(%(roles)s::regrole[])"
            " union all select proname from pg_proc where proowner = any(%(roles)s::regrole[])",
            {"roles": names},
        ).fetchall()
        assert others == [], "schemas and functions stay the owner's"


def test_the_pipeline_roles_use_the_structure_and_cannot_change_it(secured: WarehouseUrl) -> None:
    """The deploy step installs every table; a role finds them, and is told by name when one is missing."""
    with as_role(secured, TRANSFORMER) as conn:
        ensure_quarantine(conn)  # installed: nothing to do
        with pytest.raises(StructureMissing, match=r"crm_audit\.not_deployed is missing .* `crm warehouse grants`"):
            run_ddl(conn, ["create table if not exists crm_audit.not_deployed (id int)"])
        assert denied(conn, "create table crm_audit.not_deployed (id int)")
        assert denied(conn, "alter table crm_audit.quarantine add column sneaky text")
        assert denied(conn, "alter schema marts rename to marts_mine")
    with as_role(secured, LOADER) as conn:
        assert denied(conn, "select crm_audit.swap_marts()")
        assert denied(conn, "create schema raw_elsewhere")


def test_the_audit_log_records_the_pipeline_and_refuses_every_change(secured: WarehouseUrl) -> None:
    with psycopg.connect(secured.libpq(), autocommit=True) as conn:
        log = audit_log.entries(conn)
        events = [(e["event"], e["subject"]) for e in log]
        loads = {subject for event, subject in events if event == "load"}
        assert loads == {spec.key for spec in default_catalogue().enabled()}
        gate = next(e for e in log if e["event"] == "gate")
        assert gate["subject"] == GATED_STREAM and gate["run_id"] == RUN_ID
        assert gate["details"]["verdict"] == "quarantined" and gate["details"]["quarantined_rows"] > 0
        assert [e for e in events if e[0] == "publish"] == [("publish", "marts")] * 2
        # Each step was recorded by the least role that did it.
        by = {event: {e["recorded_by"] for e in log if e["event"] == event} for event in ("load", "gate", "publish")}
        assert by == {"load": {LOADER.name}, "gate": {TRANSFORMER.name}, "publish": {TRANSFORMER.name}}
        assert [e for e in events if e[0] == "grant"] == [("grant", "pii key")] + [("grant", "warehouse roles")] * 2
        # Counts and ids only: no raw value is ever written to the log.
        emails = conn.execute("select properties_email from raw_hubspot.contacts where properties_email <> ''")
        text = " ".join(str(e["details"]) for e in log)
        assert not any(email in text for (email,) in emails.fetchall())

        # Append-only for everyone, the owner included.
        for change in (
            "update crm_audit.audit_log set subject = 'rewritten'",
            "delete from crm_audit.audit_log",
            "truncate crm_audit.audit_log",
        ):
            with pytest.raises(errors.InsufficientPrivilege, match="append-only"):
                conn.execute(change)

    with as_role(secured, LOADER) as conn:
        entry = audit_log.record_event(conn, "load", "hubspot.deals", run_id="manual", details={"rows": 1})
        assert denied(conn, "insert into crm_audit.audit_log (recorded_by, event, subject) values ('x', 'load', 'y')")
    with as_role(secured, AUDITOR) as conn:
        recorded = conn.execute("select recorded_by from crm_audit.audit_log where id = %s", (entry,)).fetchone()
        assert recorded == (LOADER.name,), "an entry names the role that logged in, not the function's owner"
        assert denied(conn, "select crm_audit.record_event('load', 'x', null, '{}')")
    with as_role(secured, ANALYST) as conn:
        assert denied(conn, "select 1 from crm_audit.audit_log")


def test_grants_name_the_roles_the_airflow_connections_log_in_as(tmp_path: Path) -> None:
    from crm_pipeline.local_airflow.environment import airflow_environment

    url = WarehouseUrl("127.0.0.1", 5432, "postgres", "owner-secret", "crm")  # pragma: allowlist secret
    env = airflow_environment(url, url.with_database("airflow"), airflow_home=tmp_path)
    for r in ROLES:
        uri = env[f"AIRFLOW_CONN_CRM_WAREHOUSE_{r.key.upper()}"]
        assert uri.startswith(f"postgres://{r.name}:") and "owner-secret" not in uri


def test_grants_run_by_a_role_that_may_not_create_roles_say_what_to_do(secured: WarehouseUrl) -> None:
    with psycopg.connect(role_url(secured, ANALYST).libpq()) as conn:
        problem = apply_grants_if_allowed(conn)
    assert problem is not None
    assert "'crm_analyst' may not" in problem and "crm warehouse grants" in problem


def test_the_destinations_overwrite_and_schema_changes_succeed_as_the_loader_after_a_transform(
    secured: WarehouseUrl,
) -> None:
    """What destination-postgres 3.x sends, with its ``drop_cascade`` off (docs/raw-contract.md), as ``crm_loader``
    on a warehouse that dbt built and published twice: a full refresh overwrite (drop the table, rename the new one
    in, in one transaction), a deleted field (``DROP COLUMN`` without CASCADE), a retyped field (``ALTER COLUMN ...
    TYPE`` with the destination's USING) and a new one. Nothing depends on a raw table, so each succeeds. Rolled
    back: the module's other tests read this warehouse."""
    with as_role(secured, LOADER) as conn:
        with conn.transaction(force_rollback=True):
            conn.execute("create table raw_hubspot.deal_pipelines_new (like raw_hubspot.deal_pipelines)")
            conn.execute("drop table if exists raw_hubspot.deal_pipelines")
            conn.execute("alter table raw_hubspot.deal_pipelines_new rename to deal_pipelines")
        for change in (
            'alter table raw_hubspot.deals drop column "properties_dealname"',
            'alter table raw_hubspot.deals alter column "properties_dealname" type jsonb'
            ' using to_jsonb("properties_dealname")',
            'alter table raw_hubspot.contacts alter column "createdAt" type varchar using "createdAt"::varchar',
            'alter table raw_salesforce."Opportunity" add column "Custom_Field__c" varchar',
        ):
            with conn.transaction(force_rollback=True):
                conn.execute(change)
    with psycopg.connect(secured.libpq()) as conn:
        (views,) = conn.execute(  # type: ignore[misc]
            "select count(*) from pg_views where schemaname not in ('pg_catalog', 'information_schema')"
        ).fetchone()
    assert views == 0, "no view in the warehouse, so none can hold a raw table in place"


PLANT = """
create table {schema}.planted_ran (who text, escalated boolean);
create function {schema}.planted() returns trigger language plpgsql as $$
begin
  begin
    create table crm_audit.escalated (who text);  -- only the owner login may create in crm_audit
    insert into {schema}.planted_ran values (current_user, true);
  exception when insufficient_privilege then
    insert into {schema}.planted_ran values (current_user, false);
  end;
  return old;
end $$;
create trigger planted before delete or update on {table} for each row execute function {schema}.planted();
"""


def test_a_trigger_a_pipeline_role_plants_on_its_table_runs_with_that_roles_rights_during_an_erasure(
    secured: WarehouseUrl,
) -> None:
    """Issue 28's escalation, performed: the loader on its raw contacts and the transformer on its staging contacts
    each plant a trigger (their own logins) that tries what only the owner login may do. The erasure, run as the
    owner login (a superuser here, as locally), deletes from both tables: each trigger runs as the role that planted
    it, its attempt is refused, and the person is still erased."""
    from crm_pipeline.warehouse.erasure import erase_person

    planted = {
        LOADER: ("raw_hubspot", "raw_hubspot.contacts"),
        TRANSFORMER: ("staging", "staging.stg_hubspot__contacts"),
    }
    for role, (schema, table) in planted.items():
        with as_role(secured, role) as conn:
            conn.execute(PLANT.format(schema=schema, table=table))
    try:
        with psycopg.connect(secured.libpq(), autocommit=True) as conn:
            (person,) = conn.execute(  # type: ignore[misc]
                "select c.id from raw_hubspot.contacts c"
                " join staging.stg_hubspot__contacts s on s.contact_id = c.id::text order by c.id limit 1"
            ).fetchone()
            erasure = erase_person(conn, crm_id=person, run_id="manual__planted_trigger")
            ran = conn.execute(
                "select 'raw_hubspot', * from raw_hubspot.planted_ran union all select 'staging', * from"
                " staging.planted_ran"
            ).fetchall()
            escalated = conn.execute("select to_regclass('crm_audit.escalated')").fetchone()
        assert erasure.deleted["raw_hubspot.contacts"] >= 1 and erasure.deleted["staging.stg_hubspot__contacts"] >= 1
        assert {(schema, who, done) for schema, who, done in ran} == {
            ("raw_hubspot", LOADER.name, False),
            ("staging", TRANSFORMER.name, False),
        }, "each trigger ran as the role that planted it, and was refused"
        assert escalated == (None,)
    finally:
        for role, (schema, table) in planted.items():
            with as_role(secured, role) as conn:
                conn.execute(f"drop trigger if exists planted on {table}")
                conn.execute(f"drop function if exists {schema}.planted(); drop table if exists {schema}.planted_ran")


def test_the_transformer_writes_only_the_audit_tables_its_steps_write(secured: WarehouseUrl) -> None:
    """Issue 28's audit-table findings, tried with the transformer's own login: a ``setval`` backwards on the audit
    log's sequence (every audited step would then fail on a duplicate id), TRUNCATE on any ``crm_audit`` table, a
    write to a table its steps never write, and a table the owner adds later. Each is refused; what its steps do
    (append a gate result, read the verdicts) still works."""
    audit_tables = [t for t in tables(secured, "crm_audit") if t != sql.Identifier("crm_audit", "audit_log")]
    with psycopg.connect(secured.libpq(), autocommit=True) as conn:
        conn.execute("create table if not exists crm_audit.added_later (x int)")
    try:
        with as_role(secured, TRANSFORMER) as conn:
            assert denied(conn, "select setval('crm_audit.audit_log_id_seq', 1)")
            assert denied(conn, "select setval('crm_audit.gate_results_id_seq', 1)"), "USAGE, not UPDATE"
            for table in audit_tables:
                assert denied(conn, sql.SQL("truncate {}").format(table)), table
            assert denied(conn, "delete from crm_audit.airbyte_jobs")
            assert denied(conn, "update crm_audit.freshness_checks set stale = false")
            assert denied(conn, "select 1 from crm_audit.added_later")
            assert denied(conn, "insert into crm_audit.added_later values (1)")
            with conn.transaction(force_rollback=True):
                conn.execute("select nextval('crm_audit.gate_results_id_seq')")
                conn.execute("select count(*) from crm_audit.batch_verdicts").fetchone()
    finally:
        with psycopg.connect(secured.libpq(), autocommit=True) as conn:
            conn.execute("drop table crm_audit.added_later")


def test_the_loader_clears_a_streams_quarantine_only_once_its_raw_table_is_empty(secured: WarehouseUrl) -> None:
    """Issue 28: with its own login the loader deleted quarantine rows and so let quarantined rows past the gate.
    Now it may not touch quarantine; the replay's reset clears a stream's rows through one audited function, which
    refuses while the stream's raw table holds rows, and records what it removed. The reset itself is rolled back:
    the module's other tests read this warehouse."""
    with as_role(secured, LOADER) as conn:
        assert denied(conn, "delete from crm_audit.quarantine")
        assert denied(conn, "select crm_audit.clear_quarantine_of_emptied_stream('hubspot.contacts')")
    with psycopg.connect(secured.libpq()) as conn, conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(LOADER.name)))  # the reset, as the loader
        conn.execute("truncate raw_hubspot.contacts")
        (removed,) = conn.execute(  # type: ignore[misc]
            "select crm_audit.clear_quarantine_of_emptied_stream('hubspot.contacts')"
        ).fetchone()
        conn.execute("reset role")
        (entry,) = [e for e in audit_log.entries(conn, "release") if e["subject"] == GATED_STREAM]
    assert removed > 0, "the gated batch's quarantined rows"
    assert entry["details"]["quarantine_rows_removed"] == removed


def test_the_transformer_cannot_change_or_add_to_the_published_marts(secured: WarehouseUrl) -> None:
    """Issue 28's write-audit-publish finding, tried with the transformer's own login: it made a view over staging's
    emails in the live ``marts`` and granted it to the analyst. Now it may create nothing there, change no published
    table's rows or definition, and grant nothing on them; it still reads them (the carry-over) and owns the build
    schema, which the module's two builds and publishes, as the transformer, show."""
    mart = sql.Identifier("marts", "dim_contacts")
    with as_role(secured, TRANSFORMER) as conn:
        assert denied(conn, "create view marts.leak as select email from staging.stg_hubspot__contacts")
        assert denied(conn, "create table marts.leak (email text)")
        assert denied(conn, sql.SQL("update {} set email = 'someone@example.com'").format(mart))
        assert denied(conn, sql.SQL("delete from {}").format(mart))
        assert denied(conn, sql.SQL("alter table {} add column leak text").format(mart))
        conn.execute(sql.SQL("grant select on {} to crm_loader").format(mart))  # PostgreSQL only warns
        granted = conn.execute("select has_table_privilege('crm_loader', 'marts.dim_contacts', 'select')")
        assert granted.fetchone() == (False,), "a grant by a role that does not own the table gives nothing"
        assert denied(conn, sql.SQL("drop table {}").format(mart))
        assert conn.execute(sql.SQL("select count(*) from {}").format(mart)).fetchone()[0] > 0  # type: ignore[index]
        with conn.transaction(force_rollback=True):
            conn.execute("create table marts_build.scratch (x int)")  # the build schema is its own
