"""BENCHMARKS.md: the machine, the versions, and every measurement next to its baseline."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from crm_pipeline.bench.measure import Measurement

HEADER = ["", "measurement", "pipeline (median)", "baseline (median)", "ratio (min to max)", "target", ""]
CAUSES = {
    "P1": "Orchestration costs a fixed amount per task, and the transform has about 44: each Cosmos task runs dbt "
    "through dbtRunner, which re-reads the project's manifest, registers its adapter and writes its artifacts, and "
    "`airflow dags test` runs the tasks one at a time. Since the venv compiles bytecode and the tasks freeze the heap "
    "before dbt (docs/performance.md), that is about 0.5 s per model or test task at XS, whatever the model's size. "
    "A bare build pays its start once and runs four threads. Cosmos' watcher mode (one `dbt build` per layer) was "
    "measured on the real scheduler at S and was slower (137 s against 93 s): its 82 sensor and test task instances "
    "cost more to start on 2 cores than the dbt start-ups it saves (docs/performance.md).",
    "P3": "One more sync of every stream changes data under every model, so the changed-only run rebuilds nearly all "
    "of them, and both runs pay the same per-task orchestration cost (P1); incremental models save their share of "
    "the work only, which at small scale is a small part of the run.",
    "P2": "The simulator renders 10,000 rows at a time, column by column, into COPY text, and PostgreSQL parses one "
    "block while the next renders; below target, the rendering no longer keeps pace with the parse. Profile "
    "`_block_rows` at M: a column rendered per value in Python, or a numpy conversion that is slow per value "
    "(`datetime_as_string`, `astype(str)`), is where it went before (docs/performance.md).",
    "P4": "The bag's own cost is the imports (Airflow's SDK, Cosmos, the providers) and Cosmos rendering the four "
    "layer groups from the manifest. Two things made it slow before (docs/performance.md): a venv without compiled "
    "bytecode, which makes every parse compile its imports when PYTHONDONTWRITEBYTECODE is set, and a plugin that "
    "imports heavy modules at import time. Check those first.",
    "P5m": "A gate's memory follows its batch again: something in GX materialises rows in Python (see "
    "docs/performance.md for the query-asset case that caused it before).",
    "P6": "The pass is the sum of its stages (the note above). The load runs at about a bare COPY's pace (P2), so "
    "its share is PostgreSQL's own parsing and indexing of some 13 million rows at L; the transform pays P1's "
    "per-task cost on top of dbt's work, and the gates are small.",
    "P6m": "The pass held more than the target at its peak. The known large holders are the simulator's block in "
    "flight during the load (10,000 rows, with its text and the merge table of the contacts) and each task "
    "process's imports during the transform; a peak per stage would say which.",
    "P5": "The load runs at a bare COPY's pace, so the gates' fixed cost weighs more: each gate builds a GX context "
    "and runs one query per rule. The checkpoint counts first and samples only failed rules, and the count-only "
    "expectation does not fetch rows (docs/performance.md); a batch that fails rules pays for their samples.",
}


def _machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    return f"{cpu}, {os.cpu_count()} cores{memory}, {platform.system()} {platform.release()}"


def render(measurements: list[Measurement], *, scale: str, end_to_end_scale: str, repeat: int, postgres: str) -> str:
    versions = ", ".join(
        f"{name} {version(name)}"
        for name in ("apache-airflow", "astronomer-cosmos", "dbt-core", "dbt-postgres", "great-expectations", "psycopg")
    )
    lines = [
        "# Benchmarks",
        "",
        "<!-- Written by `make bench` (crm bench). Numbers from one run on the machine below; do not edit by hand. -->",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {_machine()}",
        f"- versions: Python {platform.python_version()}, PostgreSQL {postgres}, {versions}",
        f"- scale {scale} (P6 and its gate memory at {end_to_end_scale}), {repeat} repetition(s) per measurement, each"
        " next to its baseline in the same run",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(m.row()) + " |" for m in measurements]
    lines.append("")
    for m in measurements:
        if m.note:
            lines.append(f"- {m.key}: {m.note}.")
        if m.met is False and m.key in CAUSES:
            lines.append(f"- {m.key} gap: {CAUSES[m.key]}")
    return "\n".join(lines) + "\n"
