"""`crm bench`: run every measurement with its baseline and write the table."""

from __future__ import annotations

from pathlib import Path

import psycopg

from crm_pipeline.bench.end_to_end import measure_end_to_end
from crm_pipeline.bench.gates import measure_gates
from crm_pipeline.bench.load import measure_load
from crm_pipeline.bench.parse import measure_parse
from crm_pipeline.bench.report import render
from crm_pipeline.bench.transform import measure_transform
from crm_pipeline.local_airflow.runner import LocalStack


def run_bench(stack: LocalStack, *, scale: str, repeat: int, out: Path, end_to_end_scale: str = "L") -> Path:
    """Every measurement next to its baseline, on the local stack's server; the table written to ``out``. P6, the
    whole pass, runs at ``end_to_end_scale`` (L by the issue; the CI smoke makes it small)."""
    server = stack.warehouse
    measurements = [
        *measure_transform(stack, scale, repeat),
        measure_load(server, scale, repeat),
        measure_parse(stack.env, repeat),
        *measure_gates(server, scale, repeat),
        *measure_end_to_end(stack, end_to_end_scale, repeat),
    ]
    with psycopg.connect(server.libpq()) as conn:
        postgres = str(conn.execute("show server_version").fetchone()[0])  # type: ignore[index]
    out.write_text(
        render(measurements, scale=scale, end_to_end_scale=end_to_end_scale, repeat=repeat, postgres=postgres)
    )
    return out
