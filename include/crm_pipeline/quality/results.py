"""Every gate outcome goes to ``crm_audit.gate_results`` in the warehouse, and GX's full validation result (PII
samples redacted) to ``crm_audit.validation_results``, from which ``crm gx-docs`` builds the Data Docs site; XCom
keeps only the summary."""

from __future__ import annotations

import json

import psycopg

from crm_pipeline.quality.checkpoint import GateReport
from crm_pipeline.warehouse.ddl import run_ddl, split_script

DDL = """
create schema if not exists crm_audit;
create table if not exists crm_audit.gate_results (
    id bigserial primary key,
    checked_at timestamptz not null default now(),
    gate text not null,
    stream text,
    sync_id bigint,
    run_id text,
    rule text not null,
    column_name text,
    severity text not null,
    success boolean not null,
    unexpected_count bigint,
    element_count bigint,
    sample jsonb,
    observed jsonb
);
create table if not exists crm_audit.validation_results (
    id bigserial primary key,
    checked_at timestamptz not null default now(),
    gate text not null,
    run_id text,
    result jsonb not null
)
"""


def ensure_results(conn: psycopg.Connection) -> None:
    run_ddl(conn, split_script(DDL))


def store_report(
    conn: psycopg.Connection,
    report: GateReport,
    *,
    stream: str | None,
    sync_id: int | None,
    run_id: str | None,
) -> None:
    ensure_results(conn)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "insert into crm_audit.gate_results (gate, stream, sync_id, run_id, rule, column_name, severity,"
            " success, unexpected_count, element_count, sample, observed)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    report.gate,
                    stream,
                    sync_id,
                    run_id,
                    o.name,
                    o.column,
                    o.severity,
                    o.success,
                    o.unexpected_count,
                    o.element_count,
                    json.dumps(o.sample, default=str),
                    json.dumps(o.observed, default=str),
                )
                for o in report.outcomes
            ],
        )
        if report.validation is not None:
            cur.execute(
                "insert into crm_audit.validation_results (gate, run_id, result) values (%s, %s, %s)",
                (report.gate, run_id, json.dumps(report.validation, default=str)),
            )
