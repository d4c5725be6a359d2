"""Task callables for the CRM DAGs. DAG files wire these; the logic lives in the modules they call.

Gate failures raise ``AirflowFailException``: a failed rule is a property of the data, so retrying would only
fail again; infrastructure errors (connection lost, timeout) raise normally and get the task's retries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, Variable, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.errors import GateFailed

if TYPE_CHECKING:
    from crm_pipeline.quality.checkpoint import GateReport

# Modules that import psycopg, GX or the simulator are imported inside the callables: DAG parsing stays light.

MARTS_ASSET = "crm://warehouse/marts"  # emitted when a new version of the marts is published


def _store_and_judge(report: GateReport, *, stream: str | None, sync_id: int | None, run_id: str) -> dict[str, Any]:
    from crm_pipeline.quality.results import store_report
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    with connect(task_warehouse_url()) as conn:
        store_report(conn, report, stream=stream, sync_id=sync_id, run_id=run_id)
    try:
        report.raise_for_errors()
    except GateFailed as exc:
        raise AirflowFailException(str(exc)) from exc
    return report.summary()


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
    """Validate exactly the rows this sync delivered (``batches[stream_key]``, from the simulator or an Airbyte
    job); emits the stream's asset only when it passes."""
    from crm_pipeline.quality.checkpoint import run_checkpoint
    from crm_pipeline.quality.rules import raw_batch_query, raw_rules
    from crm_pipeline.warehouse.locate import task_warehouse_url

    spec = default_catalogue().get(stream_key)
    if stream_key not in batches:
        raise AirflowSkipException(f"no batch to gate for {stream_key}: its sync failed (see extract's failed tasks)")
    sync_id = int(batches[stream_key]["sync_id"])
    report = run_checkpoint(
        task_warehouse_url(),
        f"raw__{spec.source}__{spec.stream}",
        raw_batch_query(spec, sync_id),
        raw_rules(spec, datetime.now(UTC)),
    )
    return _store_and_judge(report, stream=spec.key, sync_id=sync_id, run_id=run_id or "")


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
