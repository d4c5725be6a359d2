"""Every fault kind the simulator injects, through the real raw gates (GX on PostgreSQL), the quarantine and a real
dbt build and publish: the right rule names each fault, failing rows are quarantined with their reason, a stopped
batch is quarantined whole, clean rows of the other streams reach the marts, and the marts reconcile with raw minus
quarantine, and every stopped batch's alert reaches a local SMTP server and webhook receiver.

One database for the module, three rounds of syncs: clean, row faults, schema faults. Each fault is injected into
one stream's sync; the streams of a round are independent, so one round carries several faults.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException
from conftest import _drop_database, expected_warning
from dbt_runs import SEED, build_and_publish, checksum

from crm_pipeline.alerts.notifiers import failure_notifiers
from crm_pipeline.catalogue import StreamSpec, default_catalogue
from crm_pipeline.quality.data_docs import build_data_docs
from crm_pipeline.quality.raw_gate import BatchVerdict, judge_batch
from crm_pipeline.quality.reconcile import reconcile
from crm_pipeline.sources.simulator.sync import BAD_ROWS, Fault, run_sync
from crm_pipeline.warehouse.locate import ensure_database
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration
SCALE = "S"  # every incremental window has rows to corrupt
MARTS = {
    "dim_contacts": "contact_key",
    "dim_accounts": "account_key",
    "dim_owners": "owner_key",
    "fct_opportunities": "opportunity_key",
    "fct_activities": "activity_key",
}

# stream: (fault kind, verdict, the rule that names it, its severity)
ROW_FAULTS = {
    "hubspot.deals": ("null_primary_key", "quarantined", "hubspot.deals:primary_key_not_null:id"),
    "salesforce.Contact": ("malformed_email", "quarantined", "salesforce.Contact:email_format:Email"),
    "salesforce.OpportunityHistory": (
        "negative_amount",
        "quarantined",
        "salesforce.OpportunityHistory:non_negative:Amount",
    ),
    "salesforce.Opportunity": ("unknown_stage", "passed", "salesforce.Opportunity:foreign_key:StageName"),
    "hubspot.engagements": ("duplicate_primary_key", "passed", "hubspot.engagements:primary_key_unique:id"),
    "salesforce.Task": ("orphan_foreign_key", "passed", "salesforce.Task:foreign_key:AccountId"),
    "hubspot.companies": ("new_column", "passed", "hubspot.companies:no_unexpected_columns"),
    "hubspot.contacts": ("empty_batch", "stopped", "hubspot.contacts:row_count_in_range"),
    # a larger failing share than the stream allows (none, below): the batch is stopped whole
    "salesforce.Lead": ("malformed_email", "stopped", "salesforce.Lead:email_format:Email"),
}
SCHEMA_FAULTS = {
    "hubspot.deals": ("dropped_column", "stopped", "hubspot.deals:contract_columns_present"),
    "salesforce.Contact": ("retyped_column", "stopped", "salesforce.Contact:contract_column_types"),
    "salesforce.Account": ("naive_timestamps", "stopped", "salesforce.Account:contract_column_types"),
}


def _spec(key: str) -> StreamSpec:
    """The catalogue's entry, except Lead, which tolerates no failing row: its faulty batch must be stopped."""
    spec = default_catalogue().get(key)
    if key == "salesforce.Lead":
        return spec.model_copy(update={"max_quarantine_share": 0.0, "quarantine_floor": 0})
    return spec


def _round(
    warehouse: WarehouseUrl, keys: list[str], faults: dict[str, tuple[str, str, str]]
) -> dict[str, BatchVerdict]:
    """Sync ``keys`` (each fault injected into its stream's sync), then judge every batch as the DAG's gates do."""
    verdicts = {}
    with psycopg.connect(warehouse.libpq()) as conn:
        for key in keys:
            injected = (Fault(stream=key, kind=faults[key][0]),) if key in faults else ()  # type: ignore[arg-type]
            result = run_sync(conn, _spec(key), seed=SEED, scale=SCALE, faults=injected)  # type: ignore[arg-type]
            conn.commit()
            verdicts[key] = judge_batch(
                warehouse, conn, _spec(key), result.sync_id, run_id="test", now=datetime.now(UTC)
            )
    return verdicts


@pytest.fixture(scope="module")
def gated(server: WarehouseUrl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WarehouseUrl, Path, dict]]:
    """A warehouse after a clean round (gated, built, published) and a round of row faults (gated, built, published)."""
    name = f"crm_gate_{uuid.uuid4().hex[:8]}"
    ensure_database(server, name)
    warehouse, target = server.with_database(name), tmp_path_factory.mktemp("dbt_target")
    streams = [spec.key for spec in default_catalogue().enabled()]
    try:
        clean = _round(warehouse, streams, {})
        build_and_publish(warehouse, target)
        with psycopg.connect(warehouse.libpq()) as conn:
            before = {table: checksum(conn, table, key) for table, key in MARTS.items()}
        faulty = _round(warehouse, streams, ROW_FAULTS)
        build_and_publish(warehouse, target)
        yield warehouse, target, {"clean": clean, "faulty": faulty, "before": before}
    finally:
        _drop_database(server, name)


def test_a_clean_sync_passes_every_gate_and_quarantines_nothing(gated) -> None:
    _, _, rounds = gated
    clean: dict[str, BatchVerdict] = rounds["clean"]
    assert {key: v.verdict for key, v in clean.items()} == dict.fromkeys(clean, "passed")
    failed = {o.name: o.severity for v in clean.values() for o in v.report.outcomes if not o.success}
    assert all(expected_warning(name, severity) for name, severity in failed.items()), failed
    assert all(v.quarantined_rows == 0 and v.batch_rows > 0 for v in clean.values())


def _alerted(verdict: BatchVerdict, rule: str, receivers, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the gate task's failure sends for this verdict (the task raises ``verdict.message()``), through the
    project's real notifiers to a real SMTP server and HTTP receiver. The task instance is a stand-in with the
    fields the alert reads; the end-to-end test covers the same path inside Airflow."""
    for name, value in receivers.env().items():
        monkeypatch.setenv(name, value)
    source, stream = verdict.stream.split(".")
    dag_id = f"crm_extract_{default_catalogue().get(verdict.stream).cadence}"
    task = SimpleNamespace(
        dag_id=dag_id,
        task_id=f"gate__{source}__{stream}",
        run_id="test_run",
        try_number=1,
        map_index=-1,
        log_url=f"http://localhost:8080/dags/{dag_id}/runs/test_run/tasks/gate",
    )
    context = {"ti": task, "exception": AirflowFailException(verdict.message())}
    for notifier in failure_notifiers():
        notifier.notify(context)
    ((webhook,), (email,)) = (receivers.webhooks, receivers.emails)
    for text in (str(webhook["text"]), email):
        assert verdict.stream in text and rule in text, text
        assert all(key in text for q in verdict.quarantined for key in q.sample_keys), "sample failing keys"


@pytest.mark.parametrize("stream", list(ROW_FAULTS))
def test_each_row_fault_is_named_by_its_rule(gated, stream: str, alert_receivers, monkeypatch) -> None:
    warehouse, _, rounds = gated
    verdict: BatchVerdict = rounds["faulty"][stream]
    kind, expected, rule = ROW_FAULTS[stream]
    assert verdict.verdict == expected, verdict.message()
    failed = [
        o
        for o in verdict.report.outcomes
        if not o.success and (o.name == rule or not expected_warning(o.name, o.severity))
    ]
    assert [o.name for o in failed] == [rule], f"{kind}: {verdict.message()}"
    if expected == "passed":  # warn severity: recorded, not quarantined
        assert failed[0].severity == "warn" and verdict.quarantined_rows == 0
    elif expected == "quarantined":  # exactly the rows GX counted, each with the rule and the reason
        (quarantined,) = verdict.quarantined
        assert quarantined.rule == rule
        assert quarantined.rows == verdict.quarantined_rows == failed[0].unexpected_count
        assert 0 < len(quarantined.sample_keys) <= BAD_ROWS
        assert rule in verdict.message() and stream in verdict.message()
        with psycopg.connect(warehouse.libpq()) as conn:
            reasons = conn.execute(
                "select distinct reason from crm_audit.quarantine where rule = %s", (rule,)
            ).fetchall()
        assert len(reasons) == 1 and reasons[0][0]
    else:  # stopped: the whole batch is quarantined, so a later run cannot carry it into the marts
        assert verdict.quarantined_rows == verdict.batch_rows
        assert verdict.reason
        assert ("max_quarantine_share" if stream == "salesforce.Lead" else rule) in verdict.reason
        _alerted(verdict, rule, alert_receivers, monkeypatch)


def test_quarantined_rows_never_reach_the_marts_and_clean_rows_do(gated) -> None:
    warehouse, _, rounds = gated
    with psycopg.connect(warehouse.libpq()) as conn:
        figures = reconcile(conn)
        assert {f.figure: f.difference for f in figures if f.difference != 0} == {}, "marts = raw minus quarantine"
        bad_stages = conn.execute(
            "select count(*) from marts.fct_opportunities where stage_name = 'stage_that_does_not_exist'"
        ).fetchone()[0]  # type: ignore[index]
        bad_amounts = conn.execute(
            "select count(*) from marts.fct_opportunity_stage_history where amount_on_entry < 0"
        ).fetchone()[0]  # type: ignore[index]
        after = {table: checksum(conn, table, key) for table, key in MARTS.items()}
    assert bad_amounts == 0, "quarantined negative amounts stay out"
    # A stage the org's picklist does not list (yet: stages sync daily) is a warning, so those opportunities stay.
    assert bad_stages > 0
    # The clean rows of the faulty round's batches reached the marts, from every stream it synced.
    unchanged = [table for table in MARTS if after[table] == rounds["before"][table]]
    assert unchanged == ["dim_owners"], "the second round's clean rows arrived (owners had no change to bring)"


def test_schema_faults_stop_their_batch_and_the_next_build_reads_the_rest_in_the_contracts_shape(
    gated, alert_receivers, monkeypatch
) -> None:
    warehouse, target, _ = gated
    with psycopg.connect(warehouse.libpq()) as conn:
        before = {table: checksum(conn, table, key) for table, key in MARTS.items()}
        contacts = checksum(conn, "stg_salesforce__contacts", "contact_id", schema="staging")
        assert conn.execute("select count(*) from staging.stg_hubspot__deals where is_won").fetchone() != (0,)
    verdicts = _round(warehouse, list(SCHEMA_FAULTS), SCHEMA_FAULTS)
    for stream, (kind, expected, rule) in SCHEMA_FAULTS.items():
        verdict = verdicts[stream]
        assert verdict.verdict == expected, f"{kind}: {verdict.message()}"
        assert rule in verdict.message(), f"{kind}: {verdict.message()}"
        assert verdict.quarantined_rows == verdict.batch_rows > 0
        alert_receivers.webhooks.clear()
        alert_receivers.emails.clear()
        _alerted(verdict, rule, alert_receivers, monkeypatch)

    # The tables themselves changed too (the destination dropped and retyped columns staging reads). Staging reads
    # them in their contract's shape, so the next transform builds and publishes; the stopped batches stay out, the
    # judged rows are all there, and the marts reconcile with raw read the same way.
    build_and_publish(warehouse, target)
    with psycopg.connect(warehouse.libpq()) as conn:
        after = {table: checksum(conn, table, key) for table, key in MARTS.items()}
        differences = {f.figure: f.difference for f in reconcile(conn) if f.difference}
        won = conn.execute(  # except deals kept at their last judged version: their new row is in the stopped batch
            "select count(*) from staging.stg_hubspot__deals as s where is_won and exists (select from"
            " raw_hubspot.deals as r where r.id = s.deal_id and r._airbyte_raw_id not in (select raw_id from"
            " crm_audit.quarantine))"
        ).fetchone()
        contacts_after = checksum(conn, "stg_salesforce__contacts", "contact_id", schema="staging")
    assert {table: count for table, (count, _) in after.items()} == {t: c for t, (c, _) in before.items()}
    assert differences == {}
    assert won == (0,), "the dropped hs_is_closed_won reads as null: no HubSpot deal is won by it"
    assert contacts_after == contacts, "the retyped IsDeleted reads back as the same flags"


def test_the_data_docs_site_shows_the_validations_without_pii(gated, tmp_path: Path) -> None:
    warehouse, _, _ = gated
    with psycopg.connect(warehouse.libpq()) as conn:
        index = build_data_docs(conn, tmp_path / "gx")
    assert index is not None and index.name == "index.html" and index.exists()
    pages = {page.relative_to(index.parent).parts[1]: page for page in index.parent.glob("validations/*/**/*.html")}
    assert {"raw__salesforce__Contact", "raw__hubspot__deals"} <= set(pages), sorted(pages)
    site = "".join(page.read_text() for page in index.parent.rglob("*.html"))
    assert "not-an-email-" not in site, "failing values of PII columns are redacted in the stored results"
    assert "pii redacted" in site


def test_a_person_lists_the_quarantine_and_releases_a_batch(gated) -> None:
    """Last in the module: it lets the stopped Lead batch through."""
    warehouse, _, rounds = gated
    lead: BatchVerdict = rounds["faulty"]["salesforce.Lead"]
    env = {**os.environ, "CRM_WAREHOUSE_URL": warehouse.libpq()}

    def crm(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "crm_pipeline.cli", "quarantine", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert f"salesforce.Lead  sync {lead.sync_id}  salesforce.Lead:batch_stopped" in crm("list")
    released = crm("release", "--stream", "salesforce.Lead", "--sync-id", str(lead.sync_id))
    assert f"quarantine entries of salesforce.Lead sync {lead.sync_id}: the next run reads them" in released
    assert f"salesforce.Lead  sync {lead.sync_id}" not in crm("list")
    with psycopg.connect(warehouse.libpq()) as conn:
        recorded = conn.execute("select stream, sync_id, rows_released > 0 from crm_audit.releases").fetchall()
    assert recorded == [("salesforce.Lead", lead.sync_id, True)], "the next transform rebuilds the released stream"
