"""P6: one whole pipeline pass at scale L, end to end: its wall time and the peak memory of its processes.

A fresh database goes through what a first day in production does, in order: every stream's first sync (the
historical load through the simulator's COPY path), every batch's raw gate, the deploy step (schemas, roles,
grants), and ``airflow dags test crm_transform`` (Cosmos task groups, tests, mart audit, publish). The targets are
absolute (15 minutes, 4 GiB), so there is no baseline column; the note splits the time by stage so a gap points
at its stage.

The pass runs in a fresh interpreter (``python -m crm_pipeline.bench.end_to_end``): the bench process has run
P1 to P5 by then, and Python keeps much of the memory it once used, so measuring there would charge the pass with
what earlier measurements left behind. Memory is the highest summed RSS of that interpreter and its children
(``peak_rss``). After the pass, the same process measures the largest gate's memory on the L batch, outside the
pass's window, for P5 at L.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from crm_pipeline.bench.gates import LARGEST, Prepared, gate_memory_measurement, gate_peak_rss_mib, prepare, xs_gate_rss
from crm_pipeline.bench.measure import Measurement
from crm_pipeline.bench.peak_rss import PeakTreeRss
from crm_pipeline.bench.transform import orchestrated_transform, raw_rows
from crm_pipeline.local_airflow.runner import LocalStack, local_stack
from crm_pipeline.warehouse.locate import drop_database

WALL_TARGET_MIN = 15.0
MEMORY_TARGET_GIB = 4.0
RESULT_PREFIX = "p6="


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
        f"peak RSS of that pass (a fresh interpreter and its children), scale {scale}",
        "GiB",
        f"<= {MEMORY_TARGET_GIB:g} GiB",
        None,
        higher_is_better=False,
        target_value=MEMORY_TARGET_GIB,
    )
    gate_memory = gate_memory_measurement(f"P5m {scale}", scale)
    for _ in range(repeat):
        child = subprocess.run(
            [sys.executable, "-m", "crm_pipeline.bench.end_to_end", scale, str(seed)],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=4 * 3600,
            check=False,
        )
        results = [line for line in child.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
        if child.returncode != 0 or not results:
            raise RuntimeError(f"the P6 pass at scale {scale} failed: {(child.stdout + child.stderr)[-3000:]}")
        result = json.loads(results[-1].removeprefix(RESULT_PREFIX))
        wall.samples.append((result["total_s"] / 60, 0.0))
        memory.samples.append((result["peak_gib"], 0.0))
        gate_memory.samples.append((result["gate_mib"], xs_gate_rss(stack.warehouse, seed)))
        wall.note = (
            f"load {_took(result['load_s'])}, gates {_took(result['gates_s'])}, deploy {_took(result['deploy_s'])},"
            f" transform {_took(result['transform_s'])}; {result['rows']:,} raw rows in {result['streams']} streams,"
            " no batch with rows stopped by its gate (the bench refuses such a pass)"
        )
    return [wall, memory, gate_memory]


def run_pass(stack: LocalStack, scale: str, seed: int) -> dict[str, float]:
    """The pass itself, in this process, on a fresh database that is dropped afterwards."""
    run: Prepared | None = None
    try:
        with PeakTreeRss() as probe:
            started = time.perf_counter()
            run = prepare(stack.warehouse, scale, seed)
            transform = orchestrated_transform(run.warehouse, stack)
            total = time.perf_counter() - started
        return {
            "load_s": run.load_s,
            "gates_s": run.gates_s,
            "deploy_s": run.deploy_s,
            "transform_s": transform,
            "total_s": total,
            "peak_gib": probe.peak_gib,
            "rows": raw_rows(run.warehouse),
            "streams": len(run.sync_ids),
            "gate_mib": gate_peak_rss_mib(run.warehouse, LARGEST, run.sync_ids[LARGEST]),
        }
    finally:
        if run is not None:
            drop_database(stack.warehouse, run.warehouse.database)


def _took(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


if __name__ == "__main__":
    print(RESULT_PREFIX + json.dumps(run_pass(local_stack(), sys.argv[1], int(sys.argv[2]))))
