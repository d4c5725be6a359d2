"""Every DAG imports cleanly, carries its ownership, retries, tags and docs, and parsing does no I/O.

Parsing runs in a fresh interpreter (dagbag_probe.py) with sockets, subprocesses and dbt trapped: a DAG file
that connects to the warehouse, calls dbt or shells out at import fails here. Parse *time* is measured by
`make bench`, not asserted here; what is asserted is what makes parsing slow: no heavy imports (dbt, GX,
pandas, psycopg) at DAG parse.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROBE = Path(__file__).with_name("dagbag_probe.py")
DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(PROBE), str(DAGS)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_no_import_errors(probe: dict[str, Any]) -> None:
    assert probe["import_errors"] == {}
    assert "crm_elt" in probe["dags"]


def test_parsing_opens_no_socket_and_runs_no_subprocess(probe: dict[str, Any]) -> None:
    assert probe["trapped_calls"] == []


def test_parsing_imports_no_heavy_module(probe: dict[str, Any]) -> None:
    assert probe["heavy_modules_imported"] == []


def test_every_dag_is_documented_and_tagged(probe: dict[str, Any]) -> None:
    for dag_id, dag in probe["dags"].items():
        assert dag["doc_md"], f"{dag_id} has no doc_md"
        assert dag["tags"], f"{dag_id} has no tags"


def test_every_task_has_owner_retries_and_timeout(probe: dict[str, Any]) -> None:
    for dag_id, dag in probe["dags"].items():
        for task in dag["tasks"]:
            where = f"{dag_id}.{task['task_id']}"
            assert task["owner"] not in ("", "airflow"), f"{where} has no owner"
            assert task["retries"] >= 2, f"{where} retries {task['retries']}"
            assert task["execution_timeout"], f"{where} has no execution_timeout"


def test_the_graph_gates_before_transform(probe: dict[str, Any]) -> None:
    task_ids = {t["task_id"] for t in probe["dags"]["crm_elt"]["tasks"]}
    for stream in ("contacts", "companies", "deals"):
        assert {f"extract.sync__hubspot__{stream}", f"extract.gate__hubspot__{stream}"} <= task_ids
    assert "transform.dim_contacts.run" in task_ids
    assert "audit_marts" in task_ids
