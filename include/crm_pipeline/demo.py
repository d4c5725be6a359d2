"""``make demo``: run the pipeline's DAGs with ``airflow dags test`` (each extract DAG, then the transform) and print
what they produced.

Airflow's own output goes to a log file; the terminal gets one line per finished task so progress is visible
without hundreds of log lines. The summary reads the warehouse: rows per raw table and mart, the gate results
of the last run, and where the dbt docs and GX Data Docs are.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.local_airflow.runner import VENV_BIN, LocalStack
from crm_pipeline.orchestration.defaults import DAGS_TEST_ENVIRONMENT
from crm_pipeline.paths import LOCAL_DIR
from crm_pipeline.quality.marts import MART_GATES
from crm_pipeline.source_mode import Mode
from crm_pipeline.warehouse.ddl import table_exists
from crm_pipeline.warehouse.roles import apply_grants
from crm_pipeline.warehouse.url import WarehouseUrl

DEMO_SCHEMAS = ("crm_simulator", "staging", "snapshots", "marts", "marts_build", "analytics")
_END_TASK = re.compile(r"\[DAG TEST\] end task task_id=(\S+)")
_NEW_STATE = re.compile(r"new_state=(\w+)")
_FAILURE = re.compile(r"(AirflowFailException|CosmosDbtRunError|Error)[:(] ?(.*)")


def reset_demo_data(warehouse: WarehouseUrl, mode: Mode) -> None:
    """Drop the simulator's state, raw tables and dbt schemas so the next run starts from the first sync; grant the
    roles their access to the schemas again (recording the local stack's source ``mode``)."""
    schemas = list(DEMO_SCHEMAS) + sorted({s.raw_schema for s in default_catalogue().streams})
    with psycopg.connect(warehouse.libpq(), autocommit=True) as conn:
        for schema in schemas:
            conn.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))
    with psycopg.connect(warehouse.libpq()) as conn:
        # the deploy step again: the dropped schemas and their grants; the audit log stays
        apply_grants(conn, mode=mode)


def run_dag_test(stack: LocalStack, dag_id: str) -> tuple[int, Path]:
    """Run ``airflow dags test`` and print one line per finished task; return (exit code, log path)."""
    log_path = Path(stack.env["AIRFLOW_HOME"]) / f"{dag_id}-dags-test.log"
    state = "?"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(VENV_BIN / "airflow"), "dags", "test", dag_id],
            env={**stack.env, **DAGS_TEST_ENVIRONMENT},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if (m := _NEW_STATE.search(line)) and "state updated" in line:
                state = m.group(1)
            elif (m := _END_TASK.search(line)) is not None:
                print(f"    {state:<14} {m.group(1)}", flush=True)
                state = "?"
            elif _reports_failure(line) and (f := _FAILURE.search(line)) is not None:
                print(f"    !! {f.group(0)[:300]}", flush=True)
        rc = proc.wait()
    return rc, log_path


def _reports_failure(line: str) -> bool:
    return "Task failed with exception" in line or line.startswith(("crm_pipeline.errors", "airflow.sdk"))


def _count(conn: psycopg.Connection, schema: str, table: str) -> int | None:
    if not table_exists(conn, schema, table):
        return None
    row = conn.execute(sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))).fetchone()
    return int(row[0]) if row else 0


def print_summary(warehouse: WarehouseUrl, logs: list[Path] | None = None) -> None:
    print("\n================ CRM pipeline summary ================")
    print(f"warehouse: {warehouse.redacted()}")
    with psycopg.connect(warehouse.libpq()) as conn:
        print("\nraw tables (rows, as Airbyte's Postgres destination writes them):")
        for spec in default_catalogue().enabled():
            name = f"{spec.raw_schema}.{spec.stream}"
            print(f"  {name:<36} {_fmt(_count(conn, spec.raw_schema, spec.stream))}")
        print("\nmarts (rows):")
        marts = conn.execute(
            "select table_name from information_schema.tables where table_schema = 'marts' order by table_name"
        ).fetchall()
        for (table,) in marts:
            print(f"  {'marts.' + table:<36} {_fmt(_count(conn, 'marts', table))}")
        if not marts:
            print("  (none built yet)")
        _print_model_checks(conn)
        print("\ngate results, each gate's latest check:")
        if _count(conn, "crm_audit", "gate_results") is None:
            print("  (no gate has run yet)")
        else:
            _print_gate_results(conn)
            from crm_pipeline.quality.data_docs import build_data_docs

            site = build_data_docs(conn)
            print(f"\nGX Data Docs of the last runs: {site}" if site else "")
        _print_health(conn)
    docs = LOCAL_DIR / "dbt" / "target" / "index.html"
    print(
        f"\ndbt docs: {docs if docs.exists() else 'run `make docs` to generate them'}"
        " (also in the Airflow UI under Browse > dbt docs after `make up`)"
    )
    for log_path in logs or ():
        print(f"full Airflow log: {log_path}")
    print("=======================================================")


def _print_health(conn: psycopg.Connection) -> None:
    """The health page's path, and the streams it finds stale (none right after a demo run)."""
    from datetime import UTC, datetime

    from crm_pipeline.monitoring.freshness import check_freshness
    from crm_pipeline.monitoring.health_page import write_health_page
    from crm_pipeline.paths import report_path

    now = datetime.now(UTC)
    stale = [c.stream for c in check_freshness(conn, default_catalogue().enabled(), now=now, store=False) if c.stale]
    page = write_health_page(conn, default_catalogue().enabled(), report_path(), now=now)
    print(f"\npipeline health page: {page}")
    print(f"  {len(stale)} stale streams: {', '.join(stale)}" if stale else "  every stream is fresh")


def _print_gate_results(conn: psycopg.Connection) -> None:
    """One line per gate, its latest check: the batch's verdict (raw gates) or PASS/FAIL, failed errors and
    warnings. Latest per gate, not per run: the raw gates run in the extract DAGs, the mart audit in the transform."""
    rows = conn.execute(
        "with latest as (select distinct on (gate) gate, run_id, sync_id from crm_audit.gate_results"
        "                order by gate, checked_at desc)"
        " select r.gate, r.stream, r.sync_id, count(*) filter (where r.success), count(*),"
        " string_agg(r.rule, ', ') filter (where not r.success and r.severity = 'error'),"
        " string_agg(r.rule, ', ') filter (where not r.success and r.severity = 'warn')"
        " from crm_audit.gate_results as r join latest as l on l.gate = r.gate"
        " and l.run_id is not distinct from r.run_id and l.sync_id is not distinct from r.sync_id"
        " group by 1, 2, 3 order by 1"
    ).fetchall()
    verdicts: dict[tuple[str, int], tuple[str, int]] = {}
    if _count(conn, "crm_audit", "batch_verdicts") is not None:
        verdicts = {
            (stream, sync_id): (verdict, quarantined)
            for stream, sync_id, verdict, quarantined in conn.execute(
                "select stream, sync_id, verdict, quarantined_rows from crm_audit.batch_verdicts"
            ).fetchall()
        }
    for gate, stream, sync_id, passed, total, errors, warnings in rows:
        verdict, quarantined = verdicts.get((stream, sync_id), ("pass" if not errors else "fail", 0))
        line = f"  {verdict.upper():<11} {gate:<38} {passed}/{total} rules"
        line += f"  {quarantined:,} rows quarantined" if quarantined and verdict != "stopped" else ""
        line += f"  failed: {errors}" if errors else ""
        line += f"  warnings: {warnings}" if warnings else ""
        print(line)


def _print_model_checks(conn: psycopg.Connection) -> None:
    """Marts against raw, and identity resolution against the simulator's ground truth, when both exist."""
    from crm_pipeline.quality.identity import score_identity
    from crm_pipeline.quality.reconcile import reconcile
    from crm_pipeline.warehouse.publish import PUBLISHED_SCHEMA

    if any(_count(conn, PUBLISHED_SCHEMA, gate.table) is None for gate in MART_GATES):
        return
    print("\nreconciliation, marts against raw:")
    for figure in reconcile(conn):
        verdict = "OK  " if figure.difference == 0 else "DIFF"
        print(f"  {verdict} {figure.figure:<24} raw {figure.raw:>16,}  marts {figure.mart:>16,}")
    if _count(conn, "crm_simulator", "identity") is None:
        return
    print("\nidentity resolution against the simulator's ground truth:")
    for kind in ("contact", "company", "owner"):
        score = score_identity(conn, kind)
        print(f"  {kind:<8} {score.records:>9,} records  precision {score.precision:.4f}  recall {score.recall:.4f}")


def _fmt(value: int | None) -> str:
    return "(not created)" if value is None else f"{value:>10,}"
