"""P6: one whole pipeline pass at scale L, end to end: its wall time and the peak memory of its processes.

A fresh database goes through what a first day in production does, in order: every stream's first sync (the
historical load through the simulator's COPY path), every batch's raw gate, the deploy step (schemas, roles,
grants), and ``airflow dags test crm_transform`` (Cosmos task groups, tests, mart audit, publish). The targets are
absolute (15 minutes, 4 GiB), so there is no baseline column; the note splits the time by stage so a gap points
at its stage. Memory is the highest summed RSS of the bench process and its children (``peak_rss``).
"""

from __future__ import annotations

import time

import psycopg

from crm_pipeline.bench.gates import (
    LARGEST,
    fresh_database,
    gate_memory_measurement,
    gate_peak_rss_mib,
    sync_all,
    xs_gate_rss,
)
from crm_pipeline.bench.measure import Measurement
from crm_pipeline.bench.peak_rss import PeakTreeRss
from crm_pipeline.bench.transform import judge_all, orchestrated_transform, raw_rows
from crm_pipeline.local_airflow.runner import LocalStack
from crm_pipeline.warehouse.locate import drop_database
from crm_pipeline.warehouse.roles import apply_grants

WALL_TARGET_MIN = 15.0
MEMORY_TARGET_GIB = 4.0


def measure_end_to_end(stack: LocalStack, scale: str, repeat: int, seed: int = 7) -> list[Measurement]:
    wall = Measurement(
        "P6",
        f"whole pass at scale {scale}: load, gates, deploy, crm_transform",
        "min",
        f"<= {WALL_TARGET_MIN:g} min",
        None,
        higher_is_better=False,
        target_value=WALL_TARGET_MIN,
    )
    memory = Measurement(
        "P6m",
        f"peak RSS of that pass (bench process and its children), scale {scale}",
        "GiB",
        f"<= {MEMORY_TARGET_GIB:g} GiB",
        None,
        higher_is_better=False,
        target_value=MEMORY_TARGET_GIB,
    )
    gate_memory = gate_memory_measurement(f"P5m {scale}", scale)
    for _ in range(repeat):
        warehouse = fresh_database(stack.warehouse)
        try:
            with PeakTreeRss() as probe:
                started = time.perf_counter()
                sync_ids = sync_all(warehouse, scale, seed)
                load = time.perf_counter() - started
                gates = judge_all(warehouse, sync_ids)
                deployed = time.perf_counter()
                with psycopg.connect(warehouse.libpq()) as conn:
                    apply_grants(conn)
                deploy = time.perf_counter() - deployed
                transform = orchestrated_transform(warehouse, stack)
                total = time.perf_counter() - started
            rows = raw_rows(warehouse)
            # The same gate at this scale and at XS, now that the large batch is there (P5's memory at L).
            gate_memory.samples.append(
                (gate_peak_rss_mib(warehouse, LARGEST, sync_ids[LARGEST]), xs_gate_rss(stack.warehouse, seed))
            )
        finally:
            drop_database(stack.warehouse, warehouse.database)
        wall.samples.append((total / 60, 0.0))
        memory.samples.append((probe.peak_gib, 0.0))
        wall.note = (
            f"load {_took(load)}, gates {_took(gates)}, deploy {_took(deploy)}, transform {_took(transform)};"
            f" {rows:,} raw rows in {len(sync_ids)} streams"
        )
    return [wall, memory, gate_memory]


def _took(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
