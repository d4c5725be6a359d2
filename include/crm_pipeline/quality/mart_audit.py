"""The audit step of write-audit-publish: everything checked on ``marts_build`` before it may be published.

Each mart's own rules, its size against the published version, and the reconciliation with raw. Every report is
stored in ``crm_audit.gate_results`` before any verdict, so one failing mart does not hide another's findings.
Used by the Airflow task and by ``crm publish``.
"""

from __future__ import annotations

from pathlib import Path

from crm_pipeline.orchestration.selection import load_manifest
from crm_pipeline.paths import dbt_manifest_path
from crm_pipeline.quality.checkpoint import GateReport, run_checkpoint
from crm_pipeline.quality.marts import against_published, mart_gates
from crm_pipeline.quality.reconcile import reconciliation_report
from crm_pipeline.quality.results import store_report
from crm_pipeline.warehouse.locate import connect
from crm_pipeline.warehouse.publish import BUILD_SCHEMA, published_count
from crm_pipeline.warehouse.url import WarehouseUrl

DEFAULT_MAX_SHRINK = 0.1


def audit_build(
    url: WarehouseUrl,
    *,
    max_shrink: float = DEFAULT_MAX_SHRINK,
    run_id: str = "",
    manifest: Path | None = None,
) -> list[GateReport]:
    """Run and store every audit of ``marts_build``; the caller decides what a failure does. The dbt manifest
    (default: the one Cosmos renders from) says which mart columns hold treated PII."""
    gates = mart_gates(load_manifest(manifest or dbt_manifest_path()))
    with connect(url) as conn:
        published = {gate.table: published_count(conn, gate.table) for gate in gates}
        reports = [reconciliation_report(conn, BUILD_SCHEMA)]
    for gate in gates:
        audited = against_published(gate, published[gate.table], max_shrink)
        reports.append(run_checkpoint(url, audited.name, audited.query, audited.rules))
    with connect(url) as conn:
        for report in reports:
            store_report(conn, report, stream=None, sync_id=None, run_id=run_id)
    return reports


def failure_message(reports: list[GateReport]) -> str | None:
    """One line naming every failed rule, or None when the build may be published."""
    failed = [report for report in reports if not report.passed]
    if not failed:
        return None
    details = "; ".join(error for report in failed for error in report.summary()["errors"])
    return f"mart audit failed, marts not published: {details}"
