"""``crm``: the project's command line. The Makefile's targets are thin calls into it.

    crm warehouse up|down|url|psql     the embedded (or configured) warehouse
    crm warehouse grants               create the least-privilege roles and (re)apply their grants (each deploy)
    crm audit-log [--event E]          the append-only audit log: loads, gates, publishes, releases, grants
    crm init                           metadata DB migrated, airflow_settings.yaml loaded, dbt manifest built
    crm manifest                       rebuild the dbt manifest Cosmos renders from
    crm airflow ARGS...                any Airflow command with the project's environment
    crm dbt ARGS...                    any dbt command against the warehouse
    crm airbyte check                  every Airbyte connection against the catalogue, before any sync
    crm up | down | status             Airflow's components in the background
    crm demo [--reset]                 init, run the pipeline with `airflow dags test`, print a summary;
                                       each demo is the next sync of the simulated CRM, --reset starts over
    crm summary                        the summary alone
    crm publish                        audit the marts dbt built (marts_build) and publish them as `marts`
    crm bench --scale M --repeat 3     measure against the bare tools (P6 at L), write BENCHMARKS.md
    crm generate --scale M --seed 7    the simulated CRMs' next sync of every stream, straight into the warehouse
    crm catalogue-docs                 regenerate docs/streams.md and dbt's source files from the catalogue

Errors the user can fix (a bad ``CRM_WAREHOUSE_URL``, a malformed settings file) print one line and exit 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from crm_pipeline.errors import CrmPipelineError
from crm_pipeline.paths import PROJECT_DIR

if TYPE_CHECKING:
    from crm_pipeline.local_airflow.runner import LocalStack


def _step(message: str) -> Callable[[], None]:
    """Print a progress line now and its duration when the returned callback runs."""
    started = time.monotonic()
    print(f"==> {message}", flush=True)

    def done() -> None:
        print(f"    done in {time.monotonic() - started:.1f}s", flush=True)

    return done


def cmd_warehouse(args: argparse.Namespace) -> int:
    from crm_pipeline.warehouse.embedded import EmbeddedWarehouse
    from crm_pipeline.warehouse.locate import resolve_warehouse_url
    from crm_pipeline.warehouse.url import URL_VARIABLE

    external = bool(os.environ.get(URL_VARIABLE, "").strip())
    if args.action == "down":
        if external:
            print(f"{URL_VARIABLE} is set: the configured warehouse is not ours to stop")
            return 0
        print("embedded warehouse stopped" if EmbeddedWarehouse().down() else "embedded warehouse was not running")
        return 0
    if args.action == "restart":  # cuts every session, as a crash or failover would; Airflow reconnects
        if external:
            print(f"{URL_VARIABLE} is set: the configured warehouse is not ours to restart")
            return 1
        EmbeddedWarehouse().restart()
        print("embedded warehouse restarted")
        return 0
    url = resolve_warehouse_url()
    if args.action == "up":
        where = "configured by " + URL_VARIABLE if external else f"embedded, data in {EmbeddedWarehouse().pgdata}"
        print(f"warehouse ready at {url.redacted()} ({where})")
    elif args.action == "url":
        print(url.libpq() if args.show_password else url.redacted())
    elif args.action == "grants":
        from crm_pipeline.warehouse.locate import connect
        from crm_pipeline.warehouse.roles import ROLES, apply_grants

        with connect(url) as conn:
            apply_grants(conn)
        for r in ROLES:
            print(f"{r.name:16} {r.purpose} (Airflow connection {r.conn_id})")
    elif args.action == "rotate-pepper":
        from crm_pipeline.warehouse import pii
        from crm_pipeline.warehouse.locate import connect

        with connect(url) as conn:
            outcome = pii.install_key(conn, pii.pii_pepper(), rotate=True)
        print(
            f"PII key {outcome}: the next crm_transform run rebuilds every model (every hashed value changes)"
            if outcome != "unchanged"
            else f"PII key unchanged: set the new pepper in the {pii.PEPPER_CONN_ID} connection first"
        )
    elif args.action == "psql":
        from dataclasses import replace

        from crm_pipeline.warehouse.embedded import pgserver_modules

        # The password goes through the environment, not argv (argv is world-readable in /proc).
        env = {**os.environ, "PGPASSWORD": url.password or ""}
        os.execve(str(pgserver_modules()[0] / "psql"), ["psql", replace(url, password=None).libpq()], env)  # noqa: S606 - become psql
    return 0


def cmd_audit_log(args: argparse.Namespace) -> int:
    """Print the audit log, oldest first: one line per entry."""
    import json

    from crm_pipeline.warehouse.audit_log import ensure_audit_log, entries
    from crm_pipeline.warehouse.locate import connect, resolve_warehouse_url

    with connect(resolve_warehouse_url()) as conn:
        ensure_audit_log(conn)
        for entry in entries(conn, args.event):
            print(
                f"{entry['id']:>6} {entry['recorded_at']:%Y-%m-%d %H:%M:%S} {entry['recorded_by']:<16}"
                f" {entry['event']:<8} {entry['subject']:<24} {entry['run_id'] or '-'} {json.dumps(entry['details'])}"
            )
    return 0


def cmd_init(_: argparse.Namespace) -> int:
    init_stack()
    return 0


def init_stack() -> LocalStack:
    """Warehouse up, metadata DB migrated, settings loaded, manifest built; the stack, for callers that go on."""
    from crm_pipeline.local_airflow.runner import (
        apply_warehouse_grants,
        build_manifest,
        ensure_metadata_db,
        load_settings,
        local_stack,
    )

    done = _step("starting the warehouse")
    stack = local_stack()
    done()
    print(f"    warehouse {stack.warehouse.redacted()}, Airflow metadata in database {stack.metadata.database!r}")
    done = _step("migrating Airflow's metadata database (skipped when already current)")
    ensure_metadata_db(stack)
    done()
    done = _step("creating the warehouse roles and applying their grants (crm warehouse grants)")
    apply_warehouse_grants(stack)
    done()
    done = _step("loading airflow_settings.yaml (pools, variables, connections)")
    load_settings(stack)
    done()
    done = _step("building the dbt manifest (dbt parse)")
    print(f"    {build_manifest(stack)}")
    done()
    return stack


def cmd_manifest(_: argparse.Namespace) -> int:
    from crm_pipeline.local_airflow.runner import build_manifest, local_stack

    print(build_manifest(local_stack()))
    return 0


def cmd_airflow(args: argparse.Namespace) -> int:
    from crm_pipeline.local_airflow.runner import VENV_BIN, local_stack

    stack = local_stack()
    os.execve(str(VENV_BIN / "airflow"), ["airflow", *args.rest], stack.env)  # noqa: S606 - become airflow
    return 0  # not reached


def cmd_airbyte_check(_: argparse.Namespace) -> int:
    """Every connection checked as the local stack's Airflow sees it (``orchestration/airbyte_check.py``)."""
    import subprocess

    from crm_pipeline.local_airflow.runner import local_stack

    command = [sys.executable, "-m", "crm_pipeline.orchestration.airbyte_check"]
    return subprocess.run(command, env=local_stack().env, check=False).returncode


def cmd_dbt(args: argparse.Namespace) -> int:
    from crm_pipeline.local_airflow.runner import local_stack, run_dbt

    return run_dbt(local_stack(), *args.rest, check=False)


def cmd_up(_: argparse.Namespace) -> int:
    from crm_pipeline.local_airflow.runner import start_components

    start_components()
    return 0


def cmd_cluster(args: argparse.Namespace) -> int:
    from crm_pipeline.local_airflow.runner import start_components

    if args.action == "up":
        start_components(cluster=True)
        return 0
    if args.action == "down":
        return cmd_down(args)
    return cmd_status(args)


def cmd_down(_: argparse.Namespace) -> int:
    """Stops ``up``'s components, or the cluster's (workers, and a Redis the project started, too)."""
    from crm_pipeline.local_airflow.runner import stop_components

    stopped = stop_components()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    from crm_pipeline.local_airflow.cluster import read_settings
    from crm_pipeline.local_airflow.runner import component_set

    components = component_set()
    running = components.running()
    if running and (cluster := read_settings(components.run_dir)) is not None:
        print(f"CeleryExecutor cluster: broker {cluster.broker}, queue {cluster.queue}")
    for entry in running:
        print(f"{entry.name}: pid {entry.pid}")
    if not running:
        print("no Airflow components running (start them with `make up` or `make cluster-up`)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from crm_pipeline.demo import print_summary, reset_demo_data, run_dag_test
    from crm_pipeline.local_airflow.runner import run_dbt
    from crm_pipeline.orchestration.extract import TRANSFORM_DAG_ID, pipeline_dag_ids
    from crm_pipeline.source_mode import source_mode

    stack = init_stack()
    if args.reset:
        done = _step("resetting the demo's raw, staging and mart schemas for a clean first sync")
        reset_demo_data(stack.warehouse, source_mode(stack.env))
        done()
    rc, logs = 0, []
    for dag_id in pipeline_dag_ids():
        what = "dbt -> mart audit -> publish" if dag_id == TRANSFORM_DAG_ID else "sync -> raw gates -> admit"
        done = _step(f"running {dag_id} with `airflow dags test` ({what})")
        dag_rc, log_path = run_dag_test(stack, dag_id)
        done()
        logs.append(log_path)
        if dag_rc != 0:
            print(f"{dag_id} failed (exit {dag_rc}); full log: {log_path}", file=sys.stderr)
            rc = rc or dag_rc
    if rc == 0:
        done = _step("generating the dbt docs site (dbt docs generate)")
        run_dbt(stack, "docs", "generate", "--quiet", check=False)
        done()
    print_summary(stack.warehouse, logs=logs)
    return rc


def cmd_generate(args: argparse.Namespace) -> int:
    """Run the next sync(s) of the simulated CRMs straight into the warehouse, with a progress bar per stream."""
    from tqdm import tqdm

    from crm_pipeline.catalogue import default_catalogue
    from crm_pipeline.sources.simulator.sync import run_sync
    from crm_pipeline.warehouse.locate import connect, resolve_warehouse_url

    url = resolve_warehouse_url()
    specs = [default_catalogue().get(key) for key in args.streams] if args.streams else default_catalogue().enabled()
    with connect(url) as conn:
        for number in range(args.syncs):
            for spec in specs:
                with tqdm(
                    desc=f"sync {number + 1}/{args.syncs} {spec.key}",
                    unit=" rows",
                    unit_scale=True,
                    leave=True,
                    mininterval=0.5,
                ) as bar:
                    result = run_sync(
                        conn, spec, seed=args.seed, scale=args.scale, dirt_rate=args.dirt_rate, progress=bar.update
                    )
                    bar.set_postfix(sync_id=result.sync_id, window_end=result.window_end.date().isoformat())
    print(f"raw data written to {url.redacted()}")
    return 0


def cmd_catalogue_docs(_: argparse.Namespace) -> int:
    from crm_pipeline import catalogue_docs, dbt_sources

    for path in [catalogue_docs.write(), *dbt_sources.write()]:
        print(f"wrote {path}")
    return 0


def cmd_publish(_: argparse.Namespace) -> int:
    """Audit the marts dbt built in marts_build and, when they pass, swap them in as `marts`."""
    from crm_pipeline.local_airflow.runner import build_manifest, local_stack
    from crm_pipeline.quality.mart_audit import audit_build, failure_message
    from crm_pipeline.warehouse.locate import connect, resolve_warehouse_url
    from crm_pipeline.warehouse.publish import publish_marts

    url = resolve_warehouse_url()
    manifest = build_manifest(local_stack())
    if message := failure_message(audit_build(url, run_id="crm publish", manifest=manifest)):
        print(message, file=sys.stderr)
        return 1
    with connect(url) as conn:
        published = publish_marts(conn, "crm publish")
    print(
        f"published {len(published.tables)} marts: "
        + ", ".join(f"{t} ({n:,})" for t, n in published.row_counts.items())
    )
    return 0


def cmd_pii_check(_: argparse.Namespace) -> int:
    """Fail when a mart exposes a catalogue PII column without the pii macro's treatment (column lineage)."""
    from crm_pipeline.paths import LOCAL_DIR
    from crm_pipeline.quality.pii_lineage import compile_and_check
    from crm_pipeline.warehouse.locate import resolve_warehouse_url

    findings = compile_and_check(resolve_warehouse_url(), LOCAL_DIR / "dbt" / "pii-check")
    for finding in findings:
        print(finding, file=sys.stderr)
    if findings:
        print(f"{len(findings)} PII finding(s) in the marts (docs/security.md)", file=sys.stderr)
        return 1
    print("every mart column fed by a PII column is treated as the catalogue says")
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    """List quarantined batches, or release one so that the next run transforms its rows."""
    from crm_pipeline.catalogue import default_catalogue
    from crm_pipeline.quality.quarantine import ensure_quarantine, release
    from crm_pipeline.warehouse.locate import connect, resolve_warehouse_url
    from crm_pipeline.warehouse.transform_lease import TransformReading

    with connect(resolve_warehouse_url()) as conn:
        ensure_quarantine(conn)
        if args.action == "list":
            rows = conn.execute(
                "select stream, sync_id, rule, count(*), min(reason) from crm_audit.quarantine"
                " group by 1, 2, 3 order by 2 desc, 1, 3"
            ).fetchall()
            for stream, sync_id, rule, count, reason in rows:
                print(f"{stream}  sync {sync_id}  {rule}  {count:,} rows  ({reason})")
            print(f"{len(rows)} quarantined (batch, rule) groups")
            return 0
        if not args.stream or args.sync_id is None:
            print("error: release needs --stream SOURCE.STREAM and --sync-id N", file=sys.stderr)
            return 2
        default_catalogue().get(args.stream)  # an unknown stream is named, with the known ones
        try:
            released = release(conn, args.stream, args.sync_id)
        except TransformReading as reading:
            print(f"error: {reading}; release {args.stream} sync {args.sync_id} after it", file=sys.stderr)
            return 1
    print(f"released {released:,} quarantine entries of {args.stream} sync {args.sync_id}: the next run reads them")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the pipeline health page from the run audit; with ``--png``, a screenshot of it beside it."""
    from datetime import UTC, datetime

    from crm_pipeline.catalogue import default_catalogue
    from crm_pipeline.monitoring.health_page import write_health_page
    from crm_pipeline.paths import report_path
    from crm_pipeline.warehouse.locate import connect, resolve_warehouse_url

    with connect(resolve_warehouse_url()) as conn:
        path = write_health_page(conn, default_catalogue().enabled(), report_path(), now=datetime.now(UTC))
    print(f"pipeline health page: {path}")
    if args.png:
        from crm_pipeline.browser import screenshot_file

        print(f"screenshot (headless Chromium): {screenshot_file(path, path.with_suffix('.png'))}")
    return 0


def cmd_gx_docs(_: argparse.Namespace) -> int:
    """Build the GX Data Docs site from the validation results stored in the warehouse."""
    from crm_pipeline.quality.data_docs import build_data_docs
    from crm_pipeline.quality.results import ensure_results
    from crm_pipeline.warehouse.locate import connect, resolve_warehouse_url

    with connect(resolve_warehouse_url()) as conn:
        ensure_results(conn)
        index = build_data_docs(conn)
    print(f"GX Data Docs: {index}" if index else "no validation results yet: run the pipeline first (make demo)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Measure the pipeline next to the bare tools and write the table (BENCHMARKS.md by default)."""
    from crm_pipeline.bench.run import run_bench

    stack = init_stack()  # P1 runs the transform DAG: a migrated metadata DB, the pools, the manifest
    out = run_bench(
        stack, scale=args.scale, repeat=args.repeat, out=Path(args.out), end_to_end_scale=args.end_to_end_scale
    )
    print(out.read_text())
    print(f"wrote {out}")
    return 0


def cmd_summary(_: argparse.Namespace) -> int:
    from crm_pipeline.demo import print_summary
    from crm_pipeline.warehouse.locate import resolve_warehouse_url

    print_summary(resolve_warehouse_url())
    return 0


def build_parser() -> argparse.ArgumentParser:
    from crm_pipeline.warehouse.audit_log import EVENTS

    parser = argparse.ArgumentParser(prog="crm", description="CRM pipeline: local warehouse, Airflow and dbt.")
    sub = parser.add_subparsers(dest="command", required=True)
    wh = sub.add_parser("warehouse", help="the warehouse: up, down, restart, url, psql, grants, rotate-pepper")
    wh.add_argument("action", choices=["up", "down", "restart", "url", "psql", "grants", "rotate-pepper"])
    wh.add_argument("--show-password", action="store_true", help="with url: print the password too")
    wh.set_defaults(func=cmd_warehouse)
    log = sub.add_parser("audit-log", help="print the append-only audit log")
    log.add_argument("--event", choices=EVENTS)
    log.set_defaults(func=cmd_audit_log)
    sub.add_parser("init", help="migrate Airflow's DB, load settings, build the manifest").set_defaults(func=cmd_init)
    sub.add_parser("manifest", help="build the dbt manifest").set_defaults(func=cmd_manifest)
    sub.add_parser(
        "pii-check", help="fail when a mart exposes a PII column untreated (column lineage of the compiled marts)"
    ).set_defaults(func=cmd_pii_check)
    for name, func in (("airflow", cmd_airflow), ("dbt", cmd_dbt)):
        p = sub.add_parser(name, help=f"run {name} with the project's environment")
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=func)
    airbyte = sub.add_parser("airbyte", help="the Airbyte connections")
    airbyte.add_argument("action", choices=["check"], help="check every connection against the catalogue")
    airbyte.set_defaults(func=cmd_airbyte_check)
    sub.add_parser("up", help="start Airflow's components").set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the components `up` started").set_defaults(func=cmd_down)
    sub.add_parser("status", help="which components are running").set_defaults(func=cmd_status)
    cluster = sub.add_parser("cluster", help="Airflow with the CeleryExecutor: two workers and a Redis broker")
    cluster.add_argument("action", choices=["up", "down", "status"])
    cluster.set_defaults(func=cmd_cluster)
    demo = sub.add_parser("demo", help="run the pipeline end to end and print a summary")
    demo.add_argument(
        "--reset",
        action="store_true",
        help="drop raw, staging and marts first, so the run is the first (historical) sync again",
    )
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("summary", help="print the pipeline summary").set_defaults(func=cmd_summary)
    sub.add_parser("publish", help="audit marts_build and publish it as marts").set_defaults(func=cmd_publish)
    sub.add_parser("gx-docs", help="build the GX Data Docs site of the latest gate runs").set_defaults(func=cmd_gx_docs)
    report = sub.add_parser("report", help="write the pipeline health page (.local/report/health.html)")
    report.add_argument("--png", action="store_true", help="also a screenshot, health.png (needs Chromium)")
    report.set_defaults(func=cmd_report)
    quarantine = sub.add_parser("quarantine", help="list quarantined rows by batch and rule, or release a batch")
    quarantine.add_argument("action", choices=["list", "release"])
    quarantine.add_argument("--stream", metavar="SOURCE.STREAM")
    quarantine.add_argument("--sync-id", type=int)
    quarantine.set_defaults(func=cmd_quarantine)
    bench = sub.add_parser("bench", help="measure the pipeline next to the bare tools; write BENCHMARKS.md")
    bench.add_argument("--scale", choices=["XS", "S", "M", "L"], default="M")
    bench.add_argument("--repeat", type=int, default=3)
    bench.add_argument(
        "--end-to-end-scale",
        choices=["XS", "S", "M", "L"],
        default="L",
        help="the scale of P6, the whole pass (L by default, as the issue sets it)",
    )
    bench.add_argument("--out", default=str(PROJECT_DIR / "BENCHMARKS.md"))
    bench.set_defaults(func=cmd_bench)
    sub.add_parser(
        "catalogue-docs", help="regenerate docs/streams.md and dbt's source files from the catalogue"
    ).set_defaults(func=cmd_catalogue_docs)
    gen = sub.add_parser("generate", help="write the simulated CRMs' next sync(s) into the warehouse")
    gen.add_argument("--scale", choices=["XS", "S", "M", "L"], default="S")
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--syncs", type=int, default=1, help="how many consecutive syncs of each stream")
    gen.add_argument("--dirt-rate", type=float, default=0.05, help="share of values with realistic dirt")
    gen.add_argument("--streams", nargs="*", metavar="SOURCE.STREAM", help="only these streams")
    gen.set_defaults(func=cmd_generate)
    return parser


def _keep_local_dir_private() -> None:
    """``.local`` holds role passwords, the PII pepper, logs and a warehouse: readable by its owner only. Run as
    root, the embedded PostgreSQL runs as pgserver's own user, which must pass through ``.local`` to reach its data
    directory: others may then traverse it (0711), never list or read it."""
    from crm_pipeline.paths import LOCAL_DIR

    if LOCAL_DIR.is_dir() and LOCAL_DIR.stat().st_uid == os.getuid():
        LOCAL_DIR.chmod(0o711 if os.getuid() == 0 else 0o700)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _keep_local_dir_private()
    try:
        return int(args.func(args) or 0)
    except CrmPipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
