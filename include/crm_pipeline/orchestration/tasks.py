"""Task callables for the CRM DAGs. DAG files wire these; the logic lives in the modules they call.

Gate failures raise ``AirflowFailException``: a failed rule is a property of the data, so retrying would only
fail again; infrastructure errors (connection lost, timeout) raise normally and get the task's retries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import Variable, task
from airflow.sdk.exceptions import AirflowFailException

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.errors import GateFailed

if TYPE_CHECKING:
    from crm_pipeline.quality.checkpoint import GateReport

# Modules that import psycopg, GX or the simulator are imported inside the callables: DAG parsing stays light.


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


@task(pool="warehouse")
def sync_stream(stream_key: str) -> dict[str, Any]:
    """Sync one stream from the local CRM simulator into its raw table (the embedded default source)."""
    from crm_pipeline.sources.simulator.sync import parse_faults, run_sync
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

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
    """Audit every mart dbt just built; any error-severity failure fails the task."""
    from crm_pipeline.quality.checkpoint import run_checkpoint
    from crm_pipeline.quality.marts import MART_GATES
    from crm_pipeline.warehouse.locate import task_warehouse_url

    url = task_warehouse_url()
    summaries = []
    for gate in MART_GATES:
        report = run_checkpoint(url, gate.name, gate.query, gate.rules)
        summaries.append(_store_and_judge(report, stream=None, sync_id=None, run_id=run_id or ""))
    return summaries
