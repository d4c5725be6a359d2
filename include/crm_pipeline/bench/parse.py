"""P4: parsing every DAG (a DagBag) with the network and the metadata database unreachable.

Each repetition is a fresh interpreter, as the dag-processor uses. Airflow's own import is timed apart from the
parse, and the parse runs with sockets refused, so a DAG file that reached for the network would show as an error
rather than as a slow parse. The baseline is the same DagBag over a folder holding one minimal DAG (a single
EmptyOperator): what any DAG costs Airflow, so the ratio shows what our DAGs add.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from crm_pipeline.bench.measure import Measurement
from crm_pipeline.paths import PROJECT_DIR

_MINIMAL_DAG = """
from datetime import datetime
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag

@dag(dag_id="minimal", schedule=None, start_date=datetime(2026, 1, 1))
def minimal():
    EmptyOperator(task_id="nothing")

minimal()
"""
_PROBE = """
import json, socket, sys, time
from airflow.dag_processing.dagbag import DagBag
def refuse(*args, **kwargs):
    raise OSError("network refused while parsing")
socket.socket.connect = refuse
socket.create_connection = refuse
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - started, "dags": len(bag.dags), "errors": len(bag.import_errors)}))
"""


def _parse_seconds(folder: Path, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(folder)], env=env, capture_output=True, text=True, timeout=300, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure_parse(env: dict[str, str], repeat: int) -> Measurement:
    result = Measurement(
        "P4",
        "parse all DAGs (DagBag), I/O refused; baseline: one minimal DAG",
        "s",
        "<= 1 s total",
        None,
        higher_is_better=False,
        target_value=1.0,
    )
    env = {
        **env,
        # A metadata DB on a closed port: parsing must not need it.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://nobody@127.0.0.1:9/nothing",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_DIR / "include"), env.get("PYTHONPATH", "")])),
    }
    with tempfile.TemporaryDirectory() as minimal:
        (Path(minimal) / "minimal_dag.py").write_text(_MINIMAL_DAG)
        for _ in range(repeat):
            parsed = _parse_seconds(PROJECT_DIR / "dags", env)
            if parsed["errors"] or not parsed["dags"]:
                raise RuntimeError(f"the DAGs did not parse cleanly: {parsed}")
            result.samples.append((parsed["seconds"], _parse_seconds(Path(minimal), env)["seconds"]))
    return result
