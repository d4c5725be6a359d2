"""P5: what the raw gates cost. Their share of a run's time, and a gate's peak memory as the data grows.

Each repetition uses a fresh database and does what one pipeline run does, timed per stage: every stream's first
sync (load), every stream's raw gate exactly as the gate task runs it (``judge_batch``: GX checkpoint, quarantine,
verdict), and a bare ``dbt build`` (transform). The share is gate time over the whole. Memory: the largest stream's
gate runs in a child process that reports its own peak RSS (``VmHWM``), at the bench scale and at XS (the
baseline): flat means the gate's memory does not follow the table's size, because every metric is SQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from crm_pipeline.bench.measure import Measurement
from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.errors import CrmPipelineError
from crm_pipeline.local_airflow.runner import VENV_BIN, dbt_env
from crm_pipeline.paths import DBT_PROJECT_DIR
from crm_pipeline.quality.raw_gate import judge_batch
from crm_pipeline.sources.simulator.sync import run_sync
from crm_pipeline.warehouse.locate import drop_database, ensure_database
from crm_pipeline.warehouse.roles import apply_grants
from crm_pipeline.warehouse.url import WarehouseUrl

LARGEST = "hubspot.engagements"  # the biggest batch at every scale


def fresh_database(server: WarehouseUrl) -> WarehouseUrl:
    name = f"crm_bench_{uuid.uuid4().hex[:8]}"
    ensure_database(server, name)
    return server.with_database(name)


def sync_all(warehouse: WarehouseUrl, scale: str, seed: int) -> dict[str, int]:
    with psycopg.connect(warehouse.libpq()) as conn:
        sync_ids = {}
        for spec in default_catalogue().enabled():
            sync_ids[spec.key] = run_sync(conn, spec, seed=seed, scale=scale).sync_id  # type: ignore[arg-type]
            conn.commit()
        return sync_ids


class StoppedBatchError(CrmPipelineError):
    """A gate stopped a batch of the pass being measured: the transform would then measure less than the pipeline's
    work (the first full run's P6 at L went unnoticed without OpportunityHistory's history this way)."""


def judge_all(warehouse: WarehouseUrl, sync_ids: dict[str, int]) -> float:
    """Every stream's raw gate on its batch ``sync_ids[stream]``, as the gate tasks run it; the time they took.
    Refuses a pass in which a gate stopped a batch with rows, naming the stream and the gate's reason. (An empty
    batch stopped by its volume bound, a daily stream's quiet day at XS, leaves no row out.)"""
    started = time.perf_counter()
    stopped = []
    with psycopg.connect(warehouse.libpq()) as conn:
        for key, sync_id in sync_ids.items():
            spec = default_catalogue().get(key)
            verdict = judge_batch(warehouse, conn, spec, sync_id, run_id="bench", now=datetime.now(UTC))
            if verdict.verdict == "stopped" and verdict.batch_rows:  # an empty batch leaves nothing out
                stopped.append(f"{spec.key} ({verdict.batch_rows:,} rows): {verdict.reason}")
    if stopped:
        raise StoppedBatchError(
            "the raw gate stopped a batch, so the pass would leave its rows out of the transform: " + "; ".join(stopped)
        )
    return time.perf_counter() - started


@dataclass(frozen=True)
class Prepared:
    """A fresh database as an extract pass leaves it, and what each step took."""

    warehouse: WarehouseUrl
    sync_ids: dict[str, int]
    load_s: float
    gates_s: float
    deploy_s: float


def prepare(server: WarehouseUrl, scale: str, seed: int, *, deploy: bool = True) -> Prepared:
    """A fresh database with every stream's first sync, every batch judged and (``deploy``) the deploy step run:
    what P1, P3, P5 and P6 start from. The caller drops ``warehouse``."""
    warehouse = fresh_database(server)
    started = time.perf_counter()
    sync_ids = sync_all(warehouse, scale, seed)
    load = time.perf_counter() - started
    gates = judge_all(warehouse, sync_ids)
    started = time.perf_counter()
    if deploy:
        with psycopg.connect(warehouse.libpq()) as conn:
            apply_grants(conn)
    return Prepared(warehouse, sync_ids, load, gates, time.perf_counter() - started)


def gate_peak_rss_mib(warehouse: WarehouseUrl, stream: str, sync_id: int) -> float:
    """Run one gate in a child process, as a gate task would; its peak resident memory in MiB."""
    env = {**os.environ, "CRM_BENCH_WAREHOUSE": warehouse.libpq()}
    child = subprocess.run(
        [sys.executable, "-m", "crm_pipeline.bench.gate_child", stream, str(sync_id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"the gate of {stream} failed in the memory probe: {child.stderr[-2000:]}")
    (peak,) = [line for line in child.stdout.splitlines() if line.startswith("peak_kib=")]
    return int(peak.removeprefix("peak_kib=")) / 1024


def gate_memory_measurement(key: str, scale: str) -> Measurement:
    """P5's memory half: the largest stream's gate at ``scale`` against the same gate at XS."""
    return Measurement(
        key, f"peak RSS of the {LARGEST} gate, scale {scale} vs XS", "MiB", "flat: <= 1.25x XS", 1.25, False
    )


def measure_gates(server: WarehouseUrl, scale: str, repeat: int, seed: int = 7) -> list[Measurement]:
    share = Measurement(
        "P5",
        "raw gates' share of a run (load + gates + transform)",
        "s",
        "<= 15% of the run",
        0.15,
        higher_is_better=False,
    )
    memory = gate_memory_measurement("P5m", scale)
    for _ in range(repeat):
        run = prepare(server, scale, seed, deploy=False)  # the bare build below runs as the owner
        try:
            started = time.perf_counter()
            dbt_build(run.warehouse)
            transform = time.perf_counter() - started
            share.samples.append((run.gates_s, run.load_s + run.gates_s + transform))
            share.note = (
                f"load {run.load_s:.1f} s, gates {run.gates_s:.1f} s, transform (bare dbt build) {transform:.1f} s"
            )
            at_scale = gate_peak_rss_mib(run.warehouse, LARGEST, run.sync_ids[LARGEST])
        finally:
            drop_database(server, run.warehouse.database)
        at_xs = xs_gate_rss(server, seed)
        memory.samples.append((at_scale, at_xs))
    return [share, memory]


def xs_gate_rss(server: WarehouseUrl, seed: int) -> float:
    """The baseline of a gate's memory: the same stream's gate at XS, on a fresh database of its own."""
    small = fresh_database(server)
    try:
        return gate_peak_rss_mib(small, LARGEST, sync_all(small, "XS", seed)[LARGEST])
    finally:
        drop_database(server, small.database)


def dbt_build(warehouse: WarehouseUrl) -> None:
    """A bare ``dbt build`` of the project on ``warehouse``, quiet, in a throwaway target (P1's and P5's baseline)."""
    from crm_pipeline.warehouse import pii
    from crm_pipeline.warehouse.locate import connect

    with connect(warehouse) as conn:
        pii.install_key(conn, pii.pii_pepper())  # the marts hash PII in the warehouse (warehouse/pii.py)
    with tempfile.TemporaryDirectory() as target:
        env = {**dbt_env(warehouse, dict(os.environ)), "DBT_TARGET_PATH": target, "DBT_LOG_PATH": target}
        subprocess.run(
            [
                str(VENV_BIN / "dbt"),
                "build",
                "--project-dir",
                str(DBT_PROJECT_DIR),
                "--profiles-dir",
                str(DBT_PROJECT_DIR),
                "--quiet",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
