"""Task callables for the CRM DAGs. DAG files wire these; the logic lives in the modules they call.

Gate failures raise ``AirflowFailException``: a failed rule is a property of the data, so retrying would only
fail again; infrastructure errors (connection lost, timeout) raise normally and get the task's retries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Asset, Variable, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from crm_pipeline.catalogue import default_catalogue

# Modules that import psycopg, GX or the simulator are imported inside the callables: DAG parsing stays light.

MARTS_ASSET = "crm://warehouse/marts"  # emitted when a new version of the marts is published


@task(pool="warehouse", map_index_template="{{ crm_stream }}")
def sync_stream(stream_key: str) -> dict[str, Any]:
    """Sync one stream from the local CRM simulator into its raw table (the embedded default source)."""
    from crm_pipeline.sources.simulator.sync import parse_faults, run_sync
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    get_current_context()["crm_stream"] = stream_key  # type: ignore[typeddict-unknown-key]  # the map index's name
    spec = default_catalogue().get(stream_key)
    seed = int(Variable.get("crm_simulator_seed", default="7"))
    scale = Variable.get("crm_simulator_scale", default="S")
    faults = parse_faults(Variable.get("crm_simulator_faults", default=""))
    dirt_rate = float(Variable.get("crm_simulator_dirt_rate", default="0.05"))
    with connect(task_warehouse_url()) as conn:
        result = run_sync(conn, spec, seed=seed, scale=scale, faults=faults, dirt_rate=dirt_rate)  # type: ignore[arg-type]
    return result.summary()


@task(pool="warehouse")
def gate_raw(stream_key: str, batches: dict[str, Any], run_id: str | None = None) -> dict[str, Any]:
    """Judge exactly the rows this sync delivered (``batches[stream_key]``, from the simulator or an Airbyte job):
    ``quality/raw_gate.py``. Passed or quarantined: the stream's asset is emitted. Stopped: the task fails, with
    the stream, the rules and sample keys in its message, and emits nothing."""
    from crm_pipeline.quality.raw_gate import judge_batch
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    spec = default_catalogue().get(stream_key)
    if stream_key not in batches:
        raise AirflowSkipException(f"no batch to gate for {stream_key}: its sync failed (see extract's failed tasks)")
    sync_id = int(batches[stream_key]["sync_id"])
    url = task_warehouse_url()
    with connect(url) as conn:
        verdict = judge_batch(url, conn, spec, sync_id, run_id=run_id or "", now=datetime.now(UTC))
    if verdict.verdict == "stopped":
        raise AirflowFailException(verdict.message())
    return verdict.summary()


def _sync_ids(batches: dict[str, Any]) -> dict[str, int]:
    """Stream → sync id, from the ``batches`` task's summary."""
    return {stream: int(batch["sync_id"]) for stream, batch in batches.items()}


@task(pool="warehouse", trigger_rule="all_done")
def admit(batches: dict[str, Any]) -> dict[str, str]:
    """Let the transform run once every batch of this run has a verdict, whichever it is: stopped batches are
    quarantined whole, so other streams' clean rows flow on. A gate that failed before judging (a lost connection,
    a crash) leaves its batch unjudged, and then nothing runs: unjudged rows must not reach the marts."""
    from crm_pipeline.quality.raw_gate import verdicts
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    with connect(task_warehouse_url()) as conn:
        judged = verdicts(conn, _sync_ids(batches))
    if missing := sorted(set(batches) - set(judged)):
        raise AirflowFailException(f"no gate verdict for the batches of {', '.join(missing)}: not transforming")
    return judged


@task(pool="warehouse", trigger_rule="all_done", on_failure_callback=[])
def stopped_batches(batches: dict[str, Any]) -> list[str]:
    """Fail the run when a gate stopped a batch, so the run shows red once the other streams went through.

    Needed because a run's state follows its leaf tasks, and the gates are not leaves: ``admit`` follows them.
    No alert of its own (the gate that stopped the batch already sent one)."""
    from crm_pipeline.quality.raw_gate import verdicts
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    with connect(task_warehouse_url()) as conn:
        stopped = sorted(s for s, verdict in verdicts(conn, _sync_ids(batches)).items() if verdict == "stopped")
    if stopped:
        raise AirflowFailException(f"batches stopped by their raw gates: {', '.join(stopped)} (see those gates)")
    return stopped


@task(pool="warehouse")
def audit_marts(run_id: str | None = None) -> list[dict[str, Any]]:
    """Audit the marts dbt just built in ``marts_build`` (``quality/mart_audit.py``); any error fails the task
    and the marts are not published."""
    from crm_pipeline.quality.mart_audit import audit_build, failure_message
    from crm_pipeline.warehouse.locate import task_warehouse_url

    max_shrink = float(Variable.get("crm_mart_max_shrink", default="0.1"))
    reports = audit_build(task_warehouse_url(), max_shrink=max_shrink, run_id=run_id or "")
    if message := failure_message(reports):
        raise AirflowFailException(message)
    return [report.summary() for report in reports]


@task(pool="warehouse", outlets=[Asset(MARTS_ASSET)])
def publish_marts(run_id: str | None = None) -> dict[str, Any]:
    """Swap the audited marts in for analysts, atomically (``warehouse/publish.py``)."""
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url
    from crm_pipeline.warehouse.publish import publish_marts as publish

    with connect(task_warehouse_url()) as conn:
        published = publish(conn, run_id)
    return {"tables": list(published.tables), "rows": published.row_counts}
