"""The raw gate of one batch: run the stream's GX checkpoint, quarantine what fails row by row, judge the batch.

Verdicts, recorded per batch in ``crm_audit.batch_verdicts``:

* ``passed``: no error-severity rule failed (warnings are stored with the results);
* ``quarantined``: row-level error rules failed on at most ``max_quarantine_share`` of the batch (or on no more
  than ``quarantine_floor`` rows); those rows are quarantined with their rule and reason and the rest flows on;
* ``stopped``: a batch-level error rule failed (schema, duplicate keys, volume) or the failing share is larger;
  the whole batch is quarantined, the stream emits no asset this run, and the gate task fails.

Staging reads only judged batches (dbt macro ``gated_source``), so rows a gate has not judged yet, or whose gate
crashed, never reach the marts. A transform run fixes its *cutoff* when it starts (``set_transform_cutoff``):
batches judged later wait for the next run, so all models of a run and its mart audit see the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg

from crm_pipeline.catalogue import StreamSpec
from crm_pipeline.quality.checkpoint import GateReport, run_checkpoint
from crm_pipeline.quality.quarantine import (
    Quarantined,
    ensure_quarantine,
    quarantine_batch,
    quarantine_failing_rows,
    quarantined_rows,
)
from crm_pipeline.quality.results import store_report
from crm_pipeline.quality.rules import raw_batch_query, raw_rules
from crm_pipeline.warehouse import audit_log
from crm_pipeline.warehouse.ddl import run_ddl, split_script
from crm_pipeline.warehouse.url import WarehouseUrl

Verdict = Literal["passed", "quarantined", "stopped"]

DDL = """
create schema if not exists crm_audit;
create table if not exists crm_audit.batch_verdicts (
    stream text not null,
    sync_id bigint not null,
    run_id text,
    verdict text not null check (verdict in ('passed', 'quarantined', 'stopped')),
    batch_rows bigint not null,
    quarantined_rows bigint not null,
    reason text,
    judged_at timestamptz not null default now(),
    primary key (stream, sync_id)
);
create table if not exists crm_audit.transform_cutoff (
    only_row boolean primary key default true check (only_row),
    judged_before timestamptz not null,
    run_id text
)
"""


@dataclass(frozen=True)
class BatchVerdict:
    stream: str
    sync_id: int
    verdict: Verdict
    batch_rows: int
    quarantined_rows: int
    report: GateReport
    quarantined: tuple[Quarantined, ...] = field(default=())
    reason: str | None = None

    def summary(self) -> dict[str, Any]:
        """Small and JSON-safe, for XCom and alerts: counts, rules and sample keys, never row values."""
        return {
            **self.report.summary(),
            "stream": self.stream,
            "sync_id": self.sync_id,
            "verdict": self.verdict,
            "batch_rows": self.batch_rows,
            "quarantined_rows": self.quarantined_rows,
            "quarantined": {q.rule: {"rows": q.rows, "sample_keys": list(q.sample_keys)} for q in self.quarantined},
            "reason": self.reason,
        }

    def message(self) -> str:
        """One paragraph naming the stream, the rules and sample failing keys."""
        head = f"raw gate {self.verdict} batch {self.sync_id} of {self.stream} ({self.batch_rows} rows)"
        details = [self.reason] if self.reason else []
        details += [f"{q.rule}: {q.rows} rows quarantined, keys e.g. {list(q.sample_keys)}" for q in self.quarantined]
        details += [f"{o.name}: {o.unexpected_count} unexpected" for o in self.report.warnings]
        return head + (": " + "; ".join(details) if details else "")


def judge_batch(
    url: WarehouseUrl, conn: psycopg.Connection, spec: StreamSpec, sync_id: int, *, run_id: str, now: datetime
) -> BatchVerdict:
    """Validate one batch, quarantine, record the verdict; raise nothing: the caller decides what a stop does."""
    rules = raw_rules(spec, now)
    query = raw_batch_query(spec, sync_id)
    report = run_checkpoint(url, f"raw__{spec.source}__{spec.stream}", query, rules)
    store_report(conn, report, stream=spec.key, sync_id=sync_id, run_id=run_id)
    ensure_quarantine(conn)
    run_ddl(conn, split_script(DDL))
    audit_log.ensure_audit_log(conn)

    by_name = {rule.name: rule for rule in rules}
    row_errors = [by_name[o.name] for o in report.errors if by_name[o.name].failing_rows is not None]
    batch_errors = [o for o in report.errors if by_name[o.name].failing_rows is None]
    batch_rows = _batch_rows(conn, query, report)
    quarantined = quarantine_failing_rows(
        conn,
        stream=spec.key,
        sync_id=sync_id,
        batch_query=query,
        primary_key=spec.primary_key,
        rules=row_errors,
        run_id=run_id,
    )
    failing = quarantined_rows(conn, spec.key, sync_id)
    share = failing / batch_rows if batch_rows else 0.0

    verdict: Verdict = "quarantined" if failing else "passed"
    reason = None
    if batch_errors:
        verdict = "stopped"
        reason = "stopped by " + "; ".join(
            f"{o.name} ({o.observed if o.unexpected_count is None else f'{o.unexpected_count} unexpected'})"
            for o in batch_errors
        )
    elif share > spec.max_quarantine_share and failing > spec.quarantine_floor:
        verdict = "stopped"
        reason = (
            f"stopped: {failing} of {batch_rows} rows ({share:.1%}) fail row rules, more than the stream's"
            f" max_quarantine_share of {spec.max_quarantine_share:.1%} (and its quarantine_floor of"
            f" {spec.quarantine_floor} rows)"
        )
    if verdict == "stopped":
        stoppers = ",".join(o.name for o in batch_errors) or "max_quarantine_share"
        quarantine_batch(
            conn,
            stream=spec.key,
            sync_id=sync_id,
            batch_query=query,
            rules=f"{spec.key}:batch_stopped:{stoppers}"[:500],
            reason=reason or "batch stopped",
            run_id=run_id,
        )
        failing = quarantined_rows(conn, spec.key, sync_id)
    with conn.transaction():
        conn.execute(
            "insert into crm_audit.batch_verdicts (stream, sync_id, run_id, verdict, batch_rows, quarantined_rows,"
            " reason) values (%s, %s, %s, %s, %s, %s, %s) on conflict (stream, sync_id) do update set"
            " run_id = excluded.run_id, verdict = excluded.verdict, batch_rows = excluded.batch_rows,"
            " quarantined_rows = excluded.quarantined_rows, reason = excluded.reason, judged_at = now()",
            (spec.key, sync_id, run_id, verdict, batch_rows, failing, reason),
        )
        audit_log.record_event(
            conn,
            "gate",
            spec.key,
            run_id=run_id,
            details={"sync_id": sync_id, "verdict": verdict, "batch_rows": batch_rows, "quarantined_rows": failing},
        )
    return BatchVerdict(spec.key, sync_id, verdict, batch_rows, failing, report, tuple(quarantined), reason)


def verdicts(conn: psycopg.Connection, batches: dict[str, int]) -> dict[str, str]:
    """Stream → verdict for the given batches (stream → sync id); a batch no gate finished judging is absent."""
    run_ddl(conn, split_script(DDL))  # when every gate crashed before judging, the table may not exist yet
    rows = conn.execute(
        "select stream, sync_id, verdict from crm_audit.batch_verdicts where stream = any(%s)", (list(batches),)
    ).fetchall()
    return {stream: verdict for stream, sync_id, verdict in rows if batches.get(stream) == sync_id}


def run_verdicts(
    conn: psycopg.Connection, run_id: str, *, exclude: dict[str, int] | None = None
) -> list[tuple[str, int, str]]:
    """(stream, sync id, verdict) of every batch the run's gates judged, but for ``exclude`` (stream → sync id):
    with the run's own batches left out, those its gates found in raw without a verdict."""
    run_ddl(conn, split_script(DDL))
    rows = conn.execute(
        "select stream, sync_id, verdict from crm_audit.batch_verdicts where run_id = %s order by stream, sync_id",
        (run_id,),
    ).fetchall()
    skip = exclude or {}
    return [(stream, int(sync_id), verdict) for stream, sync_id, verdict in rows if skip.get(stream) != sync_id]


def set_transform_cutoff(conn: psycopg.Connection, run_id: str) -> datetime:
    """Fix the batches this transform run reads: those judged until now. One row: runs do not overlap."""
    run_ddl(conn, split_script(DDL))
    with conn.transaction():
        row = conn.execute(
            "insert into crm_audit.transform_cutoff (judged_before, run_id) values (clock_timestamp(), %s)"
            " on conflict (only_row) do update set judged_before = excluded.judged_before, run_id = excluded.run_id"
            " returning judged_before",
            (run_id,),
        ).fetchone()
    return row[0]  # type: ignore[index]


def _batch_rows(conn: psycopg.Connection, query: str, report: GateReport) -> int:
    """The batch's size: GX counted it for the row-count rule; count again only if that rule could not run."""
    for outcome in report.outcomes:
        if outcome.rule == "row_count_in_range" and isinstance(outcome.observed, int):
            return outcome.observed
    row = conn.execute(f"select count(*) from ({query.replace('%', '%%')}) as batch", ()).fetchone()  # noqa: S608
    return int(row[0]) if row else 0
