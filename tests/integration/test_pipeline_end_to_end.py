"""The whole pipeline on real components: the extract DAGs (simulator or Airbyte → raw → GX gates → admit), then the
transform DAG (dbt via Cosmos → mart audit → publish).

HubSpot's hourly connection syncs through the real Airbyte provider against the API double (which performs the
sync with the same simulated company); every other stream syncs from the simulator.

The expected customer-360 mart is computed here from both simulated CRMs' records with plain Python (normalise,
match on email, join, sum), not from SQL, so a wrong staging, resolution or mart transformation fails the comparison
row by row. A stopped batch fails its gate and is kept out while the other streams reach the marts; a failed mart
audit leaves the published marts exactly as they were.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from airflow_cluster import wait
from conftest import AirflowRun, _drop_database, copied_database, expected_warning, failed_runs
from dbt_runs import build_and_publish

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.orchestration.extract import TRANSFORM_DAG_ID, extract_dag_id
from crm_pipeline.orchestration.selection import load_manifest
from crm_pipeline.paths import dbt_manifest_path
from crm_pipeline.quality.marts import mart_gates
from crm_pipeline.quality.reconcile import reconcile
from crm_pipeline.sources.airbyte_double import AirbyteDouble
from crm_pipeline.sources.contract import destination_column_name
from crm_pipeline.sources.raw_tables import temp_table_name
from crm_pipeline.sources.simulator import hubspot, salesforce
from crm_pipeline.sources.simulator.sync import NEW_COLUMN, run_sync
from crm_pipeline.sources.simulator.world import EPOCH, World
from crm_pipeline.warehouse import pii
from crm_pipeline.warehouse import transform_lease as lease
from crm_pipeline.warehouse.locate import ensure_database
from crm_pipeline.warehouse.roles import LOADER, role_url
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration

SEED, SCALE = 11, "S"
CONTACTS_DAG = extract_dag_id(default_catalogue().get("hubspot.contacts").cadence)
VARIABLES = {"crm_simulator_seed": str(SEED), "crm_simulator_scale": SCALE, "crm_simulator_faults": ""}
# The first pass syncs HubSpot's hourly streams (deals, engagements) through Airbyte; the later passes need no
# Airbyte: they run the other extract DAGs.
AIRBYTE_VARIABLE = "airbyte_connection_hubspot_hourly"
AIRBYTE_CONNECTION = "9f6a1c1e-5b1f-4c7e-9d51-4a2b8c0d0001"
AIRBYTE_TASK = f"airbyte_sync[{AIRBYTE_VARIABLE}]"


def expected_dim_contacts() -> dict[str, tuple[Any, ...]]:
    """dim_contacts after the first sync, derived from both simulated CRMs' records in plain Python: one row per
    normalised email (keyed-hashed), which CRMs know the person, and the HubSpot deals they are the contact of."""
    world = World(SEED, SCALE)
    contacts = {c["id"]: c for _, c in hubspot.changed_records(world, "contacts", None, EPOCH, 0.05)}
    survivor = {
        merged.strip(): contact_id
        for contact_id, contact in contacts.items()
        for merged in (contact["properties_hs_merged_object_ids"] or "").split(";")
        if merged.strip()
    }
    email = {cid: c["properties_email"].strip().lower() for cid, c in contacts.items() if cid not in survivor}
    people: dict[str, set[str]] = defaultdict(set)
    for address in email.values():
        people[address].add("hubspot")
    for stream in ("Contact", "Lead"):
        for _, record in salesforce.changed_records(world, stream, None, EPOCH, 0.05):
            if not record["IsDeleted"] and not record.get("IsConverted"):
                people[record["Email"].strip().lower()].add("salesforce")
    open_deals: dict[str, int] = defaultdict(int)
    won: dict[str, Decimal] = defaultdict(Decimal)
    for _, deal in hubspot.changed_records(world, "deals", None, EPOCH, 0.05):
        contact = survivor.get(deal["contacts"][0], deal["contacts"][0])
        if contact not in email:
            continue
        if deal["properties_dealstage"] == "closedwon":
            won[email[contact]] += Decimal(str(deal["properties_amount"]))
        elif deal["properties_dealstage"] != "closedlost":
            open_deals[email[contact]] += 1
    # The mart holds each email as its keyed hash; computed here with Python's hmac, independently of the SQL.
    pepper = pii.pii_pepper()
    return {
        pii.pseudonymise(pepper, address): ("hubspot" in crms, "salesforce" in crms, open_deals[address], won[address])
        for address, crms in people.items()
    }


def mart_rows(warehouse: WarehouseUrl) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(warehouse.libpq()) as conn:
        rows = conn.execute(
            "select email, is_in_hubspot, is_in_salesforce, open_deal_count, won_amount from marts.dim_contacts"
        ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def mart_checksum(warehouse: WarehouseUrl) -> str:
    with psycopg.connect(warehouse.libpq()) as conn:
        row = conn.execute("select md5(string_agg(t::text, '|' order by contact_key)) from marts.dim_contacts t")
        return str(row.fetchone()[0])  # type: ignore[index]


def gate_results(warehouse: WarehouseUrl) -> list[tuple[Any, ...]]:
    with psycopg.connect(warehouse.libpq()) as conn:
        return conn.execute(
            "select gate, rule, success, unexpected_count, severity from crm_audit.gate_results order by id"
        ).fetchall()


@dataclass
class FirstPass:
    warehouse: WarehouseUrl
    runs: dict[str, AirflowRun]
    airbyte: AirbyteDouble  # stopped after the pass; its jobs stay readable


@pytest.fixture(scope="module")
def first_pass(local_airflow, server: WarehouseUrl) -> Iterator[FirstPass]:
    """One warehouse for the module, after the first (historical) pass of the pipeline, HubSpot's hourly connection
    syncing through Airbyte. The tests after the first build on the state the one before left (a good published
    version), in file order; each runs its own pass, from the simulator."""
    name = f"crm_e2e_{uuid.uuid4().hex[:8]}"
    ensure_database(server, name)
    warehouse = server.with_database(name)
    streams = [s for s in default_catalogue().enabled() if s.airbyte_connection.variable == AIRBYTE_VARIABLE]
    # A client id of its own: airbyte-api caches bearer tokens per client for the whole process.
    client = {"client_id": f"crm-e2e-{uuid.uuid4().hex[:8]}", "client_secret": "s3cr3t-value"}
    try:
        with AirbyteDouble(warehouse, {AIRBYTE_CONNECTION: streams}, **client, seed=SEED, scale=SCALE) as airbyte:
            connection = {"conn_type": "airbyte", "host": airbyte.url, "login": airbyte.client_id}
            env = {"AIRFLOW_CONN_AIRBYTE_DEFAULT": json.dumps({**connection, "password": airbyte.client_secret})}
            runs = local_airflow.pipeline(
                warehouse, extra_env=env, **VARIABLES, **{AIRBYTE_VARIABLE: AIRBYTE_CONNECTION}
            )
        yield FirstPass(warehouse, runs, airbyte)
    finally:
        _drop_database(server, name)


@pytest.fixture(scope="module")
def first_run(first_pass: FirstPass) -> tuple[WarehouseUrl, dict[str, AirflowRun]]:
    return first_pass.warehouse, first_pass.runs


def test_first_sync_builds_the_expected_mart_through_every_gate(local_airflow, first_run) -> None:
    warehouse, runs = first_run
    assert not failed_runs(runs)

    admitted: dict[str, str] = {}
    for cadence, specs in default_catalogue().by_cadence().items():
        dag_id = extract_dag_id(cadence)
        states = local_airflow.task_states(dag_id, runs[dag_id].run_id)
        through_airbyte = {s.key for s in specs if s.airbyte_connection.variable == AIRBYTE_VARIABLE}
        if through_airbyte:
            assert states.pop(AIRBYTE_TASK) == "success"
        else:
            assert states.pop("airbyte_sync") == "skipped", "no connection id configured: no Airbyte job"
        simulated = {t for t in states if t.startswith("simulate_sync[")}
        assert simulated == {f"simulate_sync[{s.key}]" for s in specs if s.key not in through_airbyte}, (
            "each stream syncs in its cadence's DAG, from the simulator unless its connection is configured"
        )
        assert set(states.values()) == {"success"}, states
        admitted |= local_airflow.asset_events(dag_id, runs[dag_id].run_id)
    assert admitted == {s.asset_uri: "admit" for s in default_catalogue().enabled()}, "admit emits every asset"
    transform = local_airflow.task_states(TRANSFORM_DAG_ID, runs[TRANSFORM_DAG_ID].run_id)
    assert set(transform.values()) == {"success"}, transform
    assert "release_raw" in transform
    with psycopg.connect(warehouse.libpq()) as conn:
        # Every gate ended its stream's replacing write, and the transform gave raw back.
        assert lease.live_writes(conn) == []
        assert conn.execute("select run_id from crm_audit.transform_lease").fetchall() == [(None,)]
        audited = conn.execute(
            "select stream, dag_id, verdict from crm_audit.stream_runs where rows_loaded > 0 and duration_seconds > 0"
        ).fetchall()
    assert sorted(audited) == sorted(
        (s.key, extract_dag_id(s.cadence), "passed") for s in default_catalogue().enabled()
    ), "the run audit has every stream's batch, its DAG and its verdict"

    expected, actual = expected_dim_contacts(), mart_rows(warehouse)
    assert len(actual) == len(expected) > 9000
    assert sum(1 for in_hubspot, in_salesforce, *_ in expected.values() if in_hubspot and in_salesforce) > 1000
    wrong = {k: (actual.get(k), v) for k, v in expected.items() if actual.get(k) != v}
    assert not wrong, f"{len(wrong)} mart rows differ, e.g. {list(wrong.items())[:3]}"

    results = gate_results(warehouse)
    gates = {gate for gate, *_ in results}
    streams = default_catalogue().enabled()
    marts = {g.name for g in mart_gates(load_manifest(dbt_manifest_path()))}
    assert {"mart__dim_owners", "mart__owner_performance"} <= marts, "marts with PII columns get a gate too"
    assert gates == {f"raw__{s.source}__{s.stream}" for s in streams} | marts | {"mart__reconciliation"}
    failed = {rule: severity for _, rule, success, _, severity in results if not success}
    assert all(expected_warning(rule, severity) for rule, severity in failed.items()), failed


def test_a_configured_connection_syncs_through_airbyte_and_its_rows_are_gated(local_airflow, first_pass) -> None:
    """The first pass's hourly run: one Airbyte job for the connection's streams, its id stamped on every row it
    wrote (as Airbyte does), recorded in the audit, its rows gated and admitted like the simulator's."""
    assert not failed_runs(first_pass.runs)
    hourly = extract_dag_id("hourly")
    states = local_airflow.task_states(hourly, first_pass.runs[hourly].run_id)
    assert states["gate__hubspot__deals"] == "success"
    assert states["simulate_sync[salesforce.Opportunity]"] == "success", "no Salesforce connection: simulator"
    (job_id,) = first_pass.airbyte.jobs
    job = first_pass.airbyte.jobs[job_id]
    assert job.status == "succeeded"
    streams = [s.key for s in default_catalogue().by_cadence()["hourly"] if s.source == "hubspot"]
    with psycopg.connect(first_pass.warehouse.libpq()) as conn:
        for table in ("deals", "engagements"):
            sync_ids = conn.execute(f"select distinct (_airbyte_meta->>'sync_id')::bigint from raw_hubspot.{table}")
            assert [row[0] for row in sync_ids] == [job_id], table
        audit = conn.execute("select status, rows_synced, connection_id, streams from crm_audit.airbyte_jobs")
        assert audit.fetchall() == [("succeeded", job.rows, AIRBYTE_CONNECTION, streams)]
        verdicts = conn.execute(
            "select stream, verdict from crm_audit.batch_verdicts where sync_id = %s order by 1", (job_id,)
        ).fetchall()
    assert verdicts == [(key, "passed") for key in sorted(streams)], "the job's batches were judged like any other"


def lineage(events: Path, database: str) -> dict[str, tuple[set[str], set[str]]]:
    """Job → (input datasets, output datasets) from the OpenLineage events of completed tasks, for the tables of
    one warehouse database (events of every test go to one file)."""
    jobs: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if event["eventType"] != "COMPLETE":
            continue
        inputs, outputs = jobs[event["job"]["name"]]
        inputs.update(d["name"] for d in event.get("inputs", []) if d["name"].startswith(database + "."))
        outputs.update(d["name"] for d in event.get("outputs", []) if d["name"].startswith(database + "."))
    return dict(jobs)


def test_lineage_runs_from_the_sync_to_the_published_mart(local_airflow, first_run) -> None:
    """OpenLineage events (file transport) join up: the sync writes the raw table its gate and its staging model
    read, and the chain of dbt models (reported by Cosmos) leads to the table publish swaps in for analysts."""
    warehouse, runs = first_run
    assert not failed_runs(runs)
    db = warehouse.database
    jobs = lineage(local_airflow.home / "openlineage" / "events.jsonl", db)
    raw = f"{db}.raw_hubspot.contacts"
    assert raw in jobs[f"{CONTACTS_DAG}.simulate_sync"][1]
    gate_inputs, gate_outputs = jobs[f"{CONTACTS_DAG}.gate__hubspot__contacts"]
    assert gate_inputs == {raw}
    assert {f"{db}.crm_audit.quarantine", f"{db}.crm_audit.batch_verdicts"} <= gate_outputs
    staging = f"{TRANSFORM_DAG_ID}.transform.staging.stg_hubspot__contacts_model_build"
    assert raw in jobs[staging][0] and f"{db}.staging.stg_hubspot__contacts" in jobs[staging][1]
    publish = jobs[f"{TRANSFORM_DAG_ID}.publish_marts"]
    assert f"{db}.marts_build.dim_contacts" in publish[0] and f"{db}.marts.dim_contacts" in publish[1]

    reached, frontier = {raw}, [raw]
    while frontier:
        dataset = frontier.pop()
        for inputs, outputs in jobs.values():
            if dataset in inputs:
                frontier += [o for o in outputs - reached]
                reached |= outputs
    assert f"{db}.marts.dim_contacts" in reached, "raw table → staging → intermediate → marts_build → marts"


def test_a_stopped_batch_fails_its_gate_while_the_other_streams_reach_the_marts(
    local_airflow, first_run, alert_receivers
) -> None:
    warehouse, first = first_run
    assert not failed_runs(first)
    before = mart_checksum(warehouse)
    hubspot_before = hubspot_contact_ids(warehouse)

    # And, in the same run, a custom field someone added in Salesforce: the destination adds its column (its name
    # cut as the destination cuts one over 63 characters) and the gate reports it as a warning. And two Lead fields
    # staging reads, one deleted and one retyped at the source: the destination drops and retypes their columns, the
    # gate stops that batch, and the transform still publishes, reading the judged leads in their contract's shape.
    fault = (
        '[{"stream": "hubspot.contacts", "kind": "empty_batch", "sync": 2},'
        ' {"stream": "salesforce.Contact", "kind": "new_column", "sync": 2},'
        ' {"stream": "salesforce.Lead", "kind": "dropped_column", "sync": 2},'
        ' {"stream": "salesforce.Lead", "kind": "retyped_column", "sync": 2}]'
    )
    runs = {  # the contacts' extract DAG, then the transform (the other extract DAGs have nothing to show here)
        dag_id: local_airflow.dags_test(
            dag_id, warehouse, alert_receivers.env(), **{**VARIABLES, "crm_simulator_faults": fault}
        )
        for dag_id in (CONTACTS_DAG, TRANSFORM_DAG_ID)
    }
    assert set(failed_runs(runs)) == {CONTACTS_DAG}, "a stopped batch fails its extract run, so people see it"
    assert local_airflow.task_states(TRANSFORM_DAG_ID, runs[TRANSFORM_DAG_ID].run_id)["publish_marts"] == "success"
    second = runs[CONTACTS_DAG]
    _the_alerts_name_the_stream_rule_task_and_log(alert_receivers, second.run_id)

    states = local_airflow.task_states(CONTACTS_DAG, second.run_id)
    assert states.pop("gate__hubspot__contacts") == "failed"
    assert states.pop("gate__salesforce__Lead") == "failed"
    assert states.pop("held_back") == "failed", "the run shows red"
    assert states.pop("airbyte_sync") == "skipped"
    assert set(states.values()) == {"success"}, "the other gates and admit ran"
    assert "raw gate stopped batch" in second.log and "hubspot.contacts:row_count_in_range" in second.log

    assets = local_airflow.asset_events(CONTACTS_DAG, second.run_id)
    assert "airbyte://hubspot/contacts" not in assets, "a stream whose batch was stopped emits no asset"
    assert assets["airbyte://salesforce/Contact"] == "admit", "the others in its DAG still do"
    assert mart_checksum(warehouse) != before, "the other streams' new rows were published"
    assert hubspot_contact_ids(warehouse) == hubspot_before, "nothing of the stopped stream changed"
    with psycopg.connect(warehouse.libpq()) as conn:
        verdicts = dict(
            conn.execute(
                "select stream, verdict from crm_audit.batch_verdicts where run_id = %s", (second.run_id,)
            ).fetchall()
        )
        reported = dict(
            conn.execute(
                "select rule, severity from crm_audit.gate_results where run_id = %s and not success"
                " and rule like 'salesforce.%%'",
                (second.run_id,),
            ).fetchall()
        )
        added = conn.execute(
            "select count(*) from information_schema.columns where table_schema = 'raw_salesforce'"
            " and table_name = 'Contact' and column_name = %s",
            (NEW_COLUMN,),
        ).fetchone()
        lead_columns = dict(
            conn.execute(
                "select column_name, data_type from information_schema.columns where table_schema = 'raw_salesforce'"
                " and table_name = 'Lead'"
            ).fetchall()
        )
        differences = [r for r in reconcile(conn) if r.difference]
    assert verdicts.pop("hubspot.contacts") == "stopped"
    assert verdicts.pop("salesforce.Lead") == "stopped"
    assert set(verdicts.values()) == {"passed"}, verdicts
    assert reported.pop("salesforce.Contact:no_unexpected_columns") == "warn" and added == (1,), "the new column"
    assert {rule for rule, severity in reported.items() if severity == "error"} == {
        "salesforce.Lead:contract_columns_present",
        "salesforce.Lead:contract_column_types",
    }, "the Lead batch was stopped for the columns the destination dropped and retyped"
    assert "ConvertedDate" not in lead_columns and lead_columns["IsDeleted"] == "character varying", (
        "as the destination"
    )
    assert not differences, "the published marts reconcile with raw"


def _the_alerts_name_the_stream_rule_task_and_log(receivers, run_id: str) -> None:
    """One alert per failed task and channel, over real SMTP and HTTP, with what a person needs and no secret."""
    assert len(receivers.webhooks) == len(receivers.emails) == 2, "the contacts' gate and the Lead gate"
    ((webhook,), (email,)) = (
        [hook for hook in receivers.webhooks if "gate__hubspot__contacts" in str(hook["text"])],
        [mail for mail in receivers.emails if "gate__hubspot__contacts" in mail],
    )
    for text in (str(webhook["text"]), email):
        assert CONTACTS_DAG in text and "gate__hubspot__contacts" in text
        assert "hubspot.contacts:row_count_in_range" in text, "the rule that stopped the batch"
        assert f"/dags/{CONTACTS_DAG}/runs/" in text, "a link to the task's log"
        assert receivers.WEBHOOK_SECRET not in text
    assert webhook["path"].endswith(receivers.WEBHOOK_SECRET)  # type: ignore[union-attr]
    assert run_id in str(webhook["text"])
    assert f"Subject: [crm] {CONTACTS_DAG}: gate__hubspot__contacts failed" in email
    assert "To: data-team@example.com" in email


def test_a_batch_from_a_job_the_pipeline_never_started_reaches_the_marts_after_the_next_gate(
    local_airflow, first_run
) -> None:
    """Airbyte's own schedule, or a "Sync now" click, runs a job outside Airflow: its rows carry its job id, which
    no run's gate was asked to judge, so staging keeps them out. The next extract run's gate finds the batch in
    raw, judges it, and admit emits the stream's asset, so the transform that follows builds from its rows."""
    warehouse, first = first_run
    assert not failed_runs(first)
    spec = default_catalogue().get("hubspot.contacts")
    outside = 900_001  # an Airbyte job id this pipeline never saw
    with psycopg.connect(warehouse.libpq()) as conn:
        written = run_sync(conn, spec, seed=SEED, scale=SCALE, sync_id=outside)  # what the job writes
        conn.commit()
    assert written.rows > 0

    runs = {
        dag_id: local_airflow.dags_test(dag_id, warehouse, **VARIABLES) for dag_id in (CONTACTS_DAG, TRANSFORM_DAG_ID)
    }
    assert not failed_runs(runs)
    extract = runs[CONTACTS_DAG]
    assert f"hubspot.contacts: judged 1 batches no run had judged: [{outside}]" in extract.log
    assert local_airflow.asset_events(CONTACTS_DAG, extract.run_id)["airbyte://hubspot/contacts"] == "admit"
    with psycopg.connect(warehouse.libpq()) as conn:
        verdict = conn.execute(
            "select verdict, run_id from crm_audit.batch_verdicts where stream = %s and sync_id = %s",
            (spec.key, outside),
        ).fetchone()
        assert verdict == ("passed", extract.run_id)
        audited = conn.execute(
            "select source, verdict, rows_loaded from crm_audit.stream_runs where stream = %s and sync_id = %s",
            (spec.key, outside),
        ).fetchall()
        assert [(source, verdict) for source, verdict, _ in audited] == [("found", "passed")], audited
        assert audited[0][2] > 0, "the run audit counts its rows: freshness and the health page see it"
        raw_ids, staged = conn.execute(
            "select count(*), count(s.contact_id) from raw_hubspot.contacts r"
            " left join staging.stg_hubspot__contacts s on s.contact_id = r.id"
            " where (r._airbyte_meta ->> 'sync_id')::bigint = %s",
            (outside,),
        ).fetchone()  # type: ignore[misc]
    assert raw_ids > 0 and staged >= 0.9 * raw_ids, "the found batch's contacts are in staging (but merged ones)"


def hubspot_contact_ids(warehouse: WarehouseUrl) -> set[str]:
    with psycopg.connect(warehouse.libpq()) as conn:
        rows = conn.execute("select hubspot_contact_id from marts.dim_contacts where hubspot_contact_id is not null")
        return {row[0] for row in rows}


def test_a_failed_mart_audit_leaves_the_published_marts_as_they_were(local_airflow, first_run) -> None:
    """A source refresh that lost most contacts passes the raw gates (each batch is fine) but must not empty the
    marts analysts read: the audit compares the build with the published marts and stops the publish."""
    warehouse, first = first_run
    assert not failed_runs(first)
    before = mart_checksum(warehouse)
    with psycopg.connect(warehouse.libpq()) as conn:
        conn.execute("delete from raw_hubspot.contacts where id::bigint % 4 <> 0")

    # Raw changed behind the pipeline's back (no new verdict), so only a whole build sees it.
    second = local_airflow.dags_test(TRANSFORM_DAG_ID, warehouse, conf={"models": "all"}, **VARIABLES)
    assert second.returncode != 0, "the raw table is what the source sent; the build from it must not be published"
    states = local_airflow.task_states(TRANSFORM_DAG_ID, second.run_id)
    assert states["transform.marts.dim_contacts_model_build"] == "success", "the build itself works"
    assert "skipped" not in states.values(), "models = all builds everything, though no batch arrived"
    assert states["audit_marts"] == "failed"
    assert states["publish_marts"] == "upstream_failed"
    assert states["release_raw"] == "success", "a failed run gives raw back too: syncs must not wait for it"
    assert mart_checksum(warehouse) == before, "analysts still read the last good marts"
    assert "mart audit failed, marts not published: marts.dim_contacts:row_count_vs_published" in second.log
    with psycopg.connect(warehouse.libpq()) as conn:
        published = conn.execute("select count(*) from crm_audit.publishes where run_id = %s", (second.run_id,))
        assert published.fetchone()[0] == 0  # type: ignore[index]
        shrunk = conn.execute("select count(*) from marts_build.dim_contacts").fetchone()[0]  # type: ignore[index]
    assert 0 < shrunk < 0.9 * len(mart_rows(warehouse)), "the rejected build is kept aside for inspection"


def test_a_replay_resyncs_one_stream_from_scratch_behind_its_guard_rails(local_airflow, first_run) -> None:
    """Replay refuses a confirmation that does not repeat the stream, and a stream whose extract DAG has a run
    queued; then empties the raw table, resyncs it whole, gates it, admits it, and the transform publishes again."""
    warehouse, _ = first_run
    replay = {"stream": "hubspot.contacts", "confirm": "hubspot.contacts"}
    refused = local_airflow.dags_test("crm_replay", warehouse, conf={**replay, "confirm": "contacts"}, **VARIABLES)
    assert refused.returncode != 0
    assert "param confirm must repeat the stream to replay ('hubspot.contacts'), got 'contacts'" in refused.log

    env = local_airflow.env(warehouse, VARIABLES)
    trigger = [str(Path(sys.executable).parent / "airflow"), "dags", "trigger", CONTACTS_DAG]
    assert subprocess.run(trigger, env=env, capture_output=True, check=False, timeout=300).returncode == 0
    busy = local_airflow.dags_test("crm_replay", warehouse, conf=replay, **VARIABLES)
    assert busy.returncode != 0
    assert f"{CONTACTS_DAG} has 1 run(s) queued or running: replay hubspot.contacts after them" in busy.log
    with psycopg.connect(local_airflow.metadata.libpq()) as conn:  # no scheduler here: retire the queued run
        conn.execute("update dag_run set state = 'failed' where dag_id = %s and state = 'queued'", (CONTACTS_DAG,))

    run = local_airflow.dags_test("crm_replay", warehouse, conf=replay, **VARIABLES)
    assert run.returncode == 0, run.log[-3000:]
    states = local_airflow.task_states("crm_replay", run.run_id)
    assert set(states.values()) == {"success"}, states
    assert local_airflow.asset_events("crm_replay", run.run_id) == {"airbyte://hubspot/contacts": "admit"}
    with psycopg.connect(warehouse.libpq()) as conn:
        (syncs,) = conn.execute("select syncs from crm_simulator.sync_state where stream = 'hubspot.contacts'")
        batches = conn.execute("select count(distinct _airbyte_meta ->> 'sync_id') from raw_hubspot.contacts")
        assert (syncs, batches.fetchone()) == ((1,), (1,)), "one batch: the whole history, the clock back at sync 1"
        assert lease.live_writes(conn) == [], "registered from the reset until the gate judged the resync"

    transform = local_airflow.dags_test(TRANSFORM_DAG_ID, warehouse, **VARIABLES)
    assert transform.returncode == 0, transform.log[-3000:]  # audited (reconciled with raw to the cent), published
    with psycopg.connect(warehouse.libpq()) as conn:
        published = conn.execute("select count(*) from crm_audit.publishes where run_id = %s", (transform.run_id,))
        assert published.fetchone() == (1,)


def all_mart_checksums(warehouse: WarehouseUrl) -> dict[str, str]:
    with psycopg.connect(warehouse.libpq()) as conn:
        tables = [r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'marts' order by 1")]
        return {
            table: conn.execute(
                f"select md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from marts.{table} t"
            ).fetchone()[0]  # type: ignore[index]
            for table in tables
        }


def test_a_transform_builds_only_what_changed_and_publishes_what_a_whole_build_would(
    local_airflow, first_run, server, tmp_path
) -> None:
    """Only HubSpot's owners arrive: the transform builds the nodes downstream of them, skips the rest and carries
    their marts over; the published marts then equal those of a whole build of the same data, table by table."""
    warehouse, _ = first_run
    daily = extract_dag_id("daily")
    extract = local_airflow.dags_test(daily, warehouse, conf={"streams": ["hubspot.owners"]}, **VARIABLES)
    assert extract.returncode == 0, extract.log[-3000:]

    selective = local_airflow.dags_test(TRANSFORM_DAG_ID, warehouse, **VARIABLES)
    assert selective.returncode == 0, selective.log[-3000:]
    with psycopg.connect(local_airflow.metadata.libpq()) as conn:
        (arrived,) = conn.execute(
            "select value from xcom where dag_id = %s and run_id = %s and task_id = 'arrived' and key = 'return_value'",
            (TRANSFORM_DAG_ID, selective.run_id),
        ).fetchone()
    selection = (json.loads(arrived) if isinstance(arrived, str) else arrived)["selection"]
    assert (selection["everything"], selection["streams"]) == (False, ["hubspot.owners"]), selection
    assert selection["carried"], "marts nothing changed for are carried over, not rebuilt"
    states = local_airflow.task_states(TRANSFORM_DAG_ID, selective.run_id)
    dbt = {task: state for task, state in states.items() if task.startswith("transform.")}
    assert dbt["transform.staging.stg_hubspot__owners_model_build"] == "success"
    assert dbt["transform.marts.dim_owners_model_build"] == "success"
    assert dbt["transform.staging.stg_salesforce__tasks_model_build"] == "skipped", "Salesforce tasks did not change"
    assert set(dbt.values()) == {"success", "skipped"}, dbt
    assert (states["audit_marts"], states["publish_marts"]) == ("success", "success")
    built = {t for t, state in dbt.items() if state == "success" and t.endswith("_model_build")}
    assert len(built) < len([t for t in dbt if t.endswith("_model_build")]), "some models were not rebuilt"
    selected = all_mart_checksums(warehouse)

    # What a whole build publishes from the same data: dbt builds every node of a copy of the warehouse, and the
    # copy publishes. (A whole build through the DAG, ``models`` = ``all``, is the failed audit's run above.)
    with copied_database(server, warehouse, "crm_e2e_whole") as copy:
        build_and_publish(copy, tmp_path / "whole")
        whole = all_mart_checksums(copy)
    assert whole == selected, "the selective run published what a whole build does"


def _as_loader(warehouse: WarehouseUrl, statements: list[str]) -> None:
    """Run ``statements`` with the loader's own login, as Airbyte's destination does, each in auto-commit but for
    a list item holding several (the destination's own transactions: the overwrite swap)."""
    with psycopg.connect(role_url(warehouse, LOADER).libpq(), autocommit=True) as conn:
        for statement in statements:
            with conn.transaction():
                for part in statement.split(";"):
                    conn.execute(part)


def _resent(table: str, sync_id: int, columns: list[str], order: str) -> str:
    """An append of rows already in ``table`` (at-least-once delivery), stamped with another job's id."""
    keep = ", ".join(f'"{c}"' for c in columns)
    return (
        f"insert into {table} (_airbyte_raw_id, _airbyte_extracted_at, _airbyte_meta, _airbyte_generation_id, {keep})"
        f" select gen_random_uuid()::text, now(), jsonb_build_object('sync_id', {sync_id}, 'changes', '[]'::jsonb),"
        f" _airbyte_generation_id, {keep} from {table} order by {order} desc limit 10"
    )


def test_the_destinations_statements_succeed_while_a_transform_runs_and_the_next_run_reconciles(
    local_airflow, first_run
) -> None:
    """What Airbyte's destination may do at any moment (docs/raw-contract.md), done with the loader's own login
    while a transform builds every model: a full refresh overwrite (a table in the raw schema, then DROP and RENAME),
    a new custom property with a name too long for PostgreSQL (ADD COLUMN), a field retyped (ALTER COLUMN TYPE
    with the destination's USING) and one deleted (DROP COLUMN), both unread by staging, and an append from a job
    Airflow never started. Each waits at most for the model reading its table, then succeeds. The running
    transform publishes: the overwrite put an unjudged batch in place of the pipelines, so staging and the audit
    both read the stages staging kept at their last judged version (docs/raw-contract.md). The next pass restores
    the contract with the destination's statements, judges the appended batch and publishes marts that reconcile
    with raw."""
    warehouse, _ = first_run
    with psycopg.connect(warehouse.libpq()) as conn:
        engagement_columns = [
            row[0]
            for row in conn.execute(
                "select column_name from information_schema.columns where table_schema = 'raw_hubspot'"
                " and table_name = 'engagements' and column_name not like '\\_airbyte\\_%%' order by ordinal_position"
            )
        ]
        deals_before = conn.execute("select count(*) from raw_hubspot.deals").fetchone()
    temp = temp_table_name("raw_hubspot", "deal_pipelines")
    custom = destination_column_name("properties_expansion_opportunity_score_for_strategic_accounts_in_dach")
    statements = [
        f"drop table if exists raw_hubspot.{temp}; create table raw_hubspot.{temp} (like raw_hubspot.deal_pipelines)",
        f"insert into raw_hubspot.{temp} select * from raw_hubspot.deal_pipelines",
        # another job's rows (the simulator, which plays the platform, keeps the generation it issued)
        f"update raw_hubspot.{temp} set _airbyte_meta = jsonb_set(_airbyte_meta, '{{sync_id}}', '900002')",
        f"drop table if exists raw_hubspot.deal_pipelines; alter table raw_hubspot.{temp} rename to deal_pipelines",
        f'alter table raw_hubspot.deals add column "{custom}" varchar',
        'alter table raw_hubspot.deals alter column "properties_hs_lastmodifieddate" type varchar'
        ' using "properties_hs_lastmodifieddate"::varchar',
        'alter table raw_hubspot.deals drop column "line_items"',
        _resent("raw_hubspot.engagements", 900003, engagement_columns, '"lastUpdated"'),
    ]
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(local_airflow.dags_test, TRANSFORM_DAG_ID, warehouse, conf={"models": "all"}, **VARIABLES)
        wait(lambda: _dbt_reads_raw(warehouse) or running.done(), 600, "a dbt model reading raw", every=0.05)
        assert not running.done(), running.result().log[-3000:]
        _as_loader(warehouse, statements)
        assert not running.done(), "the statements ran while the transform did"
        during = running.result()
    assert during.returncode == 0, _what_failed(local_airflow, TRANSFORM_DAG_ID, during)
    assert local_airflow.task_states(TRANSFORM_DAG_ID, during.run_id)["publish_marts"] == "success"

    runs = local_airflow.pipeline(warehouse, **VARIABLES)
    assert not failed_runs(runs), {d: _what_failed(local_airflow, d, r) for d, r in runs.items() if r.returncode}
    hourly = runs[extract_dag_id("hourly")]
    assert "hubspot.engagements: judged 1 batches no run had judged: [900003]" in hourly.log
    with psycopg.connect(warehouse.libpq()) as conn:
        columns = dict(
            conn.execute(
                "select column_name, data_type from information_schema.columns"
                " where table_schema = 'raw_hubspot' and table_name = 'deals'"
            ).fetchall()
        )
        assert columns["line_items"] == "jsonb" and custom not in columns, "the next sync restored the contract"
        assert columns["properties_hs_lastmodifieddate"] == "timestamp with time zone"
        assert conn.execute("select count(*) from raw_hubspot.deals").fetchone() >= deals_before, "no deal lost"
        published = conn.execute(
            "select count(*) from crm_audit.publishes where run_id = %s", (runs[TRANSFORM_DAG_ID].run_id,)
        ).fetchone()
        assert published == (1,)
        assert not [r for r in reconcile(conn) if r.difference], "the published marts reconcile with raw"


def _dbt_reads_raw(warehouse: WarehouseUrl) -> bool:
    """Whether the transformer is running a statement that reads a raw table (a staging model's build)."""
    with psycopg.connect(warehouse.libpq()) as conn:
        row = conn.execute(
            "select count(*) from pg_stat_activity where datname = current_database() and usename = 'crm_transformer'"
            " and state = 'active' and query ~ '\"raw_(hubspot|salesforce)\"'"
        ).fetchone()
    return bool(row and row[0])


def _what_failed(local_airflow, dag_id: str, run: AirflowRun) -> str:
    """The run's failed tasks and the log lines that say why (a whole log is too long to read in an assertion)."""
    states = local_airflow.task_states(dag_id, run.run_id)
    failed = sorted(task for task, state in states.items() if state in ("failed", "upstream_failed"))
    why = [line for line in run.log.splitlines() if re.search(r"Error|ERROR|Failure|failed:|Exception", line)]
    return f"{dag_id}: failed {failed}\n" + "\n".join(why[-40:])
