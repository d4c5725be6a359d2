"""Task callables for the CRM DAGs. DAG files wire these; the logic lives in the modules they call.

Gate failures raise ``AirflowFailException``: a failed rule is a property of the data, so retrying would only
fail again; infrastructure errors (connection lost, timeout) raise normally and get the task's retries.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, AssetAlias, AssetAny, Variable, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.lineage import report_tables

if TYPE_CHECKING:
    from crm_pipeline.catalogue import StreamSpec

LOG = logging.getLogger(__name__)  # task logs capture it
# Modules that import psycopg, GX or the simulator are imported inside the callables: DAG parsing stays light.

MARTS_ASSET = "crm://warehouse/marts"  # emitted when a new version of the marts is published
RAW_BATCHES_ALIAS = "crm_raw_batches"  # admit emits the stream assets (airbyte://<source>/<stream>) through it
WRITES_TIMEOUT = timedelta(minutes=20)  # how long a transform waits for replacing syncs already under way
# What a raw gate writes, besides reading its raw table (OpenLineage).
GATE_OUTPUTS = [("crm_audit", t) for t in ("gate_results", "validation_results", "quarantine", "batch_verdicts")]


@task(pool="warehouse", map_index_template="{{ crm_stream }}")
def sync_stream(stream_key: str) -> dict[str, Any]:
    """Sync one stream from the local CRM simulator into its raw table (the embedded default source)."""
    from crm_pipeline.orchestration.replacing_writes import end, register
    from crm_pipeline.orchestration.window import backfill_window
    from crm_pipeline.paths import LOADER_CONN_ID
    from crm_pipeline.sources.simulator.sync import BackfillWindowError, parse_faults, run_sync
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    context = get_current_context()
    context["crm_stream"] = stream_key  # type: ignore[typeddict-unknown-key]  # the map index's name
    spec = default_catalogue().get(stream_key)
    seed = int(Variable.get("crm_simulator_seed", default="7"))
    scale = Variable.get("crm_simulator_scale", default="S")
    faults = parse_faults(Variable.get("crm_simulator_faults", default=""))
    dirt_rate = float(Variable.get("crm_simulator_dirt_rate", default="0.05"))
    window = backfill_window(context)  # a backfill, or None
    url = task_warehouse_url(LOADER_CONN_ID)
    with connect(url) as conn:
        # A dedup or overwrite sync waits while a transform reads raw; its gate ends the registration.
        holder = register(conn, [spec], context)
        try:
            result = run_sync(
                conn,
                spec,
                seed=seed,
                scale=scale,
                faults=faults,
                dirt_rate=dirt_rate,
                window=window,
                audit_run_id=context["run_id"],
            )
        except BackfillWindowError as bad_window:  # names the stream and the param; retrying cannot help
            end(holder, [spec.key], conn_id=LOADER_CONN_ID)
            raise AirflowFailException(str(bad_window)) from None
        except BaseException:  # rolled back: nothing landed, so no transform need wait for a gate
            end(holder, [spec.key], conn_id=LOADER_CONN_ID)
            raise
    report_tables(url, outputs=[(spec.raw_schema, spec.stream)])
    return result.summary()


@task(pool="warehouse")
def gate_raw(stream_key: str, batches: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
    """Judge exactly the rows this sync delivered (``batches[stream_key]``, from the simulator or an Airbyte job):
    ``quality/raw_gate.py``; then every other batch of the stream's raw table that has no verdict and whose job
    has ended (``quality/unjudged.py``: jobs started outside Airflow, jobs that failed after rows landed).
    Passed or quarantined: ``admit`` emits the stream's asset. Stopped: the task fails, with the stream, the rules
    and sample keys in its message."""
    from crm_pipeline.orchestration.airbyte import ended_jobs
    from crm_pipeline.orchestration.replacing_writes import end_for_run
    from crm_pipeline.paths import TRANSFORMER_CONN_ID
    from crm_pipeline.quality.raw_gate import judge_batch
    from crm_pipeline.quality.unjudged import unjudged_sync_ids
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    spec = default_catalogue().get(stream_key)
    own = int(batches[stream_key]["sync_id"]) if stream_key in batches else None
    url = task_warehouse_url(TRANSFORMER_CONN_ID)
    with connect(url) as conn:
        found, waiting = ended_jobs(stream_key, [i for i in unjudged_sync_ids(conn, spec) if i != own])
        for sync_id, status in sorted(waiting.items()):
            LOG.info("%s: batch %s is not judged yet, its Airbyte job is %s", stream_key, sync_id, status)
        if own is None and not found:
            end_for_run([stream_key])
            raise AirflowSkipException(
                f"no batch to gate for {stream_key}: its sync failed (see extract's failed tasks)"
            )
        now = datetime.now(UTC)
        judged = [
            judge_batch(url, conn, spec, sync_id, run_id=run_id or "", now=now)
            for sync_id in [own, *found]
            if sync_id is not None
        ]
    end_for_run([stream_key])  # judged: a transform waiting for this write may fix its cutoff now
    report_tables(url, inputs=[(spec.raw_schema, spec.stream)], outputs=GATE_OUTPUTS)
    if found:
        LOG.info("%s: judged %d batches no run had judged: %s", stream_key, len(found), found)
    if stopped := [v for v in judged if v.verdict == "stopped"]:
        raise AirflowFailException("; ".join(v.message() for v in stopped))
    summary = judged[0].summary() if own is not None else {"stream": stream_key, "sync_id": None, "verdict": None}
    summary["found"] = [{"sync_id": v.sync_id, "verdict": v.verdict} for v in judged if v.sync_id != own]
    return summary


def _sync_ids(batches: dict[str, Any]) -> dict[str, int]:
    """Stream → sync id, from the ``batches`` task's summary."""
    return {stream: int(batch["sync_id"]) for stream, batch in batches.items()}


@task(pool="warehouse", trigger_rule="all_done", outlets=[AssetAlias(RAW_BATCHES_ALIAS)])
def admit(batches: dict[str, Any]) -> dict[str, str]:
    """Admit this run's judged batches to the transform: emit the asset of every stream whose batch passed or was
    quarantined (``airbyte://<source>/<stream>``, through the alias ``crm_raw_batches``), all at once, so the
    transform starts once per extract run, after every gate, and only for streams that brought data it may read.
    Every batch of the run, admitted or not, goes to the run audit (``crm_audit.stream_runs``), and so does every
    batch its gates found in raw without a verdict (source ``found``).

    A stopped batch (its gate failed) or an unjudged one (its gate crashed) emits nothing; staging would not read
    its rows anyway (``gated_source`` reads judged batches only). ``held_back`` makes such a run red."""
    from crm_pipeline.monitoring.run_audit import record_found_batches, record_stream_runs
    from crm_pipeline.orchestration.replacing_writes import end_for_run
    from crm_pipeline.paths import TRANSFORMER_CONN_ID
    from crm_pipeline.quality.raw_gate import run_verdicts, verdicts
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    context = get_current_context()
    end_for_run()  # a gate that crashed left its stream's replacing write registered: the transform goes on
    with connect(task_warehouse_url(TRANSFORMER_CONN_ID)) as conn:
        judged = verdicts(conn, _sync_ids(batches))
        record_stream_runs(conn, dag_id=context["dag"].dag_id, run_id=context["run_id"], batches=batches)
        found = run_verdicts(conn, context["run_id"], exclude=_sync_ids(batches))
        record_found_batches(conn, dag_id=context["dag"].dag_id, run_id=context["run_id"], found=found)
    events = context["outlet_events"][AssetAlias(RAW_BATCHES_ALIAS)]
    catalogue = default_catalogue()
    admitted = [(stream, batches[stream]["sync_id"], verdict) for stream, verdict in judged.items()]
    for stream, sync_id, verdict in sorted(admitted + found):
        if verdict != "stopped":
            events.add(Asset(catalogue.get(stream).asset_uri), extra={"sync_id": sync_id})
    return judged


@task(pool="warehouse", trigger_rule="all_done", on_failure_callback=[])
def held_back(batches: dict[str, Any], stream_keys: list[str]) -> list[str]:
    """Fail the run when a selected stream was not admitted: its sync failed (no batch), its gate stopped the
    batch, or its gate never judged it. The run then shows red once the other streams went through.

    Needed because a run's state follows its leaf tasks, and the syncs and gates are not leaves. No alert of its
    own (the sync or gate that failed already sent one)."""
    from crm_pipeline.orchestration.airbyte import selected_streams
    from crm_pipeline.paths import AUDITOR_CONN_ID
    from crm_pipeline.quality.raw_gate import verdicts
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    with connect(task_warehouse_url(AUDITOR_CONN_ID)) as conn:
        judged = verdicts(conn, _sync_ids(batches))
    missing = sorted(set(selected_streams(stream_keys)) - set(batches))
    stopped = sorted(s for s, verdict in judged.items() if verdict == "stopped")
    unjudged = sorted(set(batches) - set(judged))
    problems = [f"no batch (their syncs failed): {', '.join(missing)}"] if missing else []
    problems += [f"stopped by their raw gates: {', '.join(stopped)}"] if stopped else []
    problems += [f"never judged (their gates failed): {', '.join(unjudged)}"] if unjudged else []
    if problems:
        raise AirflowFailException(f"streams held back from the transform, {'; '.join(problems)}")
    return []


def stream_assets(specs: Sequence[StreamSpec]) -> AssetAny:
    """Any of the streams' assets: the transform's schedule."""
    return AssetAny(*(Asset(spec.asset_uri) for spec in specs))


@task(pool="warehouse")
def arrived(run_id: str | None = None) -> dict[str, Any]:
    """Fix the run's cutoff (the batches judged until now are what every model reads: ``raw_gate.py``), decide
    which dbt nodes the run builds (those downstream of the streams that changed since the last publish; the
    others' marts are carried over: ``selection.py``), and report the asset events (streams and sync ids) that
    triggered the run, none when triggered by hand. Every dbt task reads ``selection`` from this task's XCom."""
    from crm_pipeline.orchestration.selection import load_manifest, select_nodes
    from crm_pipeline.paths import TRANSFORMER_CONN_ID, dbt_manifest_path
    from crm_pipeline.quality.raw_gate import set_transform_cutoff
    from crm_pipeline.warehouse import pii, transform_lease
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    params = get_current_context().get("params") or {}
    with connect(task_warehouse_url(TRANSFORMER_CONN_ID)) as conn:
        # The marts hash PII with the pepper of the crm_pii_pepper connection: installed on first use, refused
        # when it is not the one the warehouse already hashes with (rotation is deliberate: docs/security.md).
        pii.install_key(conn, pii.pii_pepper())
        # Raw must not change under what this run reads until it publishes: hold the lease (new dedup and
        # overwrite syncs wait), let those already writing land, then fix the cutoff. ``release_raw`` gives it back.
        transform_lease.hold(conn, run_id or "")
        transform_lease.wait_for_writes(conn, timeout=WRITES_TIMEOUT)
        cutoff = set_transform_cutoff(conn, run_id or "")
        selection = select_nodes(
            conn,
            load_manifest(dbt_manifest_path()),
            default_catalogue().enabled(),
            cutoff=cutoff,
            models=str(params.get("models", "changed")),
            full_refresh=bool(params.get("full_refresh", False)),
        )
    events = get_current_context().get("triggering_asset_events") or {}
    arrived: dict[str, list[int]] = {}
    for asset, asset_events in events.items():
        uri = getattr(asset, "uri", str(asset))
        arrived[uri] = sorted({int(event.extra.get("sync_id", 0)) for event in asset_events})
    LOG.info("building %s", "every model" if selection.everything else f"{len(selection.nodes)} dbt nodes")
    LOG.info("why: %s; marts carried over: %s", selection.reason, ", ".join(selection.carried) or "none")
    return {"judged_before": cutoff.isoformat(), "arrived": arrived, "selection": selection.summary()}


@task(pool="warehouse")
def release_raw(run_id: str | None = None) -> bool:
    """Give back the lease ``arrived`` took (``warehouse/transform_lease.py``), so syncs waiting on it go ahead.
    The transform's teardown: it runs once every other task is done, whether the run published or failed, and
    its own state does not decide the run's. Whether the run still held the lease."""
    from crm_pipeline.paths import TRANSFORMER_CONN_ID
    from crm_pipeline.warehouse import transform_lease
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    with connect(task_warehouse_url(TRANSFORMER_CONN_ID)) as conn:
        return transform_lease.release(conn, run_id or "")


@task(pool="warehouse", trigger_rule="none_failed")
def audit_marts(run_id: str | None = None) -> list[dict[str, Any]]:
    """Audit the marts dbt just built in ``marts_build`` (``quality/mart_audit.py``); any error fails the task
    and the marts are not published. Runs when no dbt task failed: a skipped model (nothing it reads changed) is
    fine, its mart was carried over."""
    from crm_pipeline.paths import TRANSFORMER_CONN_ID
    from crm_pipeline.quality.mart_audit import audit_build, failure_message
    from crm_pipeline.warehouse.locate import task_warehouse_url

    max_shrink = float(Variable.get("crm_mart_max_shrink", default="0.1"))
    reports = audit_build(task_warehouse_url(TRANSFORMER_CONN_ID), max_shrink=max_shrink, run_id=run_id or "")
    if message := failure_message(reports):
        raise AirflowFailException(message)
    return [report.summary() for report in reports]


@task(pool="warehouse", outlets=[Asset(MARTS_ASSET)])
def publish_marts(run_id: str | None = None) -> dict[str, Any]:
    """Swap the audited marts in for analysts, atomically (``warehouse/publish.py``)."""
    from crm_pipeline.paths import TRANSFORMER_CONN_ID
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url
    from crm_pipeline.warehouse.publish import BUILD_SCHEMA, PUBLISHED_SCHEMA
    from crm_pipeline.warehouse.publish import publish_marts as publish

    url = task_warehouse_url(TRANSFORMER_CONN_ID)
    with connect(url) as conn:
        published = publish(conn, run_id)
    report_tables(
        url,
        inputs=[(BUILD_SCHEMA, table) for table in published.tables],
        outputs=[(PUBLISHED_SCHEMA, table) for table in published.tables],
    )
    return {"tables": list(published.tables), "rows": published.row_counts}
