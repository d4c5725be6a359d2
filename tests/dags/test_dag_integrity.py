"""Every DAG imports cleanly, carries its ownership, retries, tags and docs, and parsing does no I/O.

Parsing runs in a fresh interpreter (dagbag_probe.py) with sockets, subprocesses and dbt trapped: a DAG file
that connects to the warehouse, calls dbt or shells out at import fails here. Parse *time* is measured by
`make bench`, not asserted here; what is asserted is what makes parsing slow: no heavy imports (dbt, GX,
pandas, psycopg) at DAG parse.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from crm_pipeline.catalogue import default_catalogue

PROBE = Path(__file__).with_name("dagbag_probe.py")
DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    # The metadata DB points at a closed loopback port: a DAG file that reads a Variable, a Connection or the
    # database at import would open a socket there, and the probe's trap records it.
    env = {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://nobody@127.0.0.1:9/nothing",
    }
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
    extract = {"crm_extract_hourly", "crm_extract_every_6h", "crm_extract_daily"}
    assert set(probe["dags"]) == extract | {"crm_transform", "crm_monitor", "crm_replay", "crm_erase_person"}


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
            assert task["retry_backoff"] > 1, f"{where}: retries do not back off ({task['retry_backoff']})"
            assert task["max_retry_delay"], f"{where}: no max_retry_delay"


MANUAL_DAGS = ("crm_replay", "crm_erase_person")


def test_failures_recoveries_and_late_runs_alert(probe: dict[str, Any]) -> None:
    """Every task alerts on failure (email and webhook, one notifier), except ``held_back``, which only repeats
    what a failed sync or gate already said; every scheduled DAG alerts when a run recovers from an alerted failure,
    and every DAG when a run misses its deadline (the triggerer runs the callback: ``alerts/deadline.py``)."""
    for dag_id, dag in probe["dags"].items():
        expected = 0 if dag_id in MANUAL_DAGS else 1  # run by hand and watched: nothing to recover
        assert dag["recovery_alerts"] == expected, f"{dag_id}: recovery alerts {dag['recovery_alerts']}"
        assert [d["callback"] for d in dag["deadlines"]] == ["crm_pipeline.alerts.deadline.deadline_missed"], dag_id
        assert 0 < dag["deadlines"][0]["interval"] <= 3 * 3600, dag_id
        for task in dag["tasks"]:
            expected = 0 if task["task_id"] == "held_back" else 1
            assert task["failure_alerts"] == expected, f"{dag_id}.{task['task_id']}"


def test_each_stream_is_extracted_on_its_cadence(probe: dict[str, Any]) -> None:
    """One extract DAG per frequency of the catalogue, holding exactly the streams of that frequency, scheduled
    on it with runs that cover their interval (backfills deliver it), one run at a time and without catchup
    (docs/decisions.md #15, #18)."""
    expected = {"hourly": "seconds=3600", "every_6h": "seconds=21600", "daily": "days=1"}
    gated: list[str] = []
    for cadence, specs in default_catalogue().by_cadence().items():
        dag = probe["dags"][f"crm_extract_{cadence}"]
        assert f"DeltaDataIntervalTimetable(delta=datetime.timedelta({expected[cadence]}))" == dag["schedule"]
        assert (dag["catchup"], dag["max_active_runs"]) == (False, 1)
        gates = {t["task_id"] for t in dag["tasks"] if t["task_id"].startswith("gate__")}
        assert gates == {f"gate__{s.source}__{s.stream}" for s in specs}
        gated += gates
    assert len(gated) == len(default_catalogue().enabled()), "every enabled stream is gated in exactly one DAG"


def test_hourly_streams_go_first_under_contention(probe: dict[str, Any]) -> None:
    weight = {
        dag_id: {t["priority_weight"] for t in dag["tasks"]}
        for dag_id, dag in probe["dags"].items()
        if dag_id.startswith("crm_extract_")
    }
    assert min(weight["crm_extract_hourly"]) > max(weight["crm_extract_every_6h"]) > max(weight["crm_extract_daily"])


def test_an_extract_dag_gates_then_admits(probe: dict[str, Any]) -> None:
    tasks = {t["task_id"]: t for t in probe["dags"]["crm_extract_hourly"]["tasks"]}
    syncs = {"airbyte_sync": "airbyte", "simulate_sync": "warehouse"}
    for task_id, pool in syncs.items():
        assert tasks[task_id]["mapped"], f"{task_id} fans out at run time"
        assert tasks[task_id]["pool"] == pool
    assert set(tasks["batches"]["upstream"]) == set(syncs)
    gates = {t for t in tasks if t.startswith("gate__")}
    assert all(tasks[g]["upstream"] == ["batches"] for g in gates)
    assert all(tasks[g]["outlets"] == [] for g in gates), "a gate emits nothing itself: admit does, after all gates"
    admit = tasks["admit"]
    assert set(admit["upstream"]) == {*gates, "batches"}, "admit waits for every gate and reads the batches"
    assert admit["trigger_rule"] == "all_done", "a stopped batch must not hold the other streams back"
    assert admit["outlets"] == ["crm_raw_batches"], "the stream assets go out through one alias"
    held = tasks["held_back"]
    assert set(held["upstream"]) == {*gates, "batches"} and held["trigger_rule"] == "all_done"
    assert not [t for t, task in tasks.items() if "held_back" in task["upstream"]], "a leaf: it colours the run"


def test_the_transform_runs_on_the_stream_assets(probe: dict[str, Any]) -> None:
    dag = probe["dags"]["crm_transform"]
    assert dag["asset_schedule"] == sorted(s.asset_uri for s in default_catalogue().enabled())
    assert dag["max_active_runs"] == 1, "two dbt builds must not write marts_build together"
    tasks = {t["task_id"]: t for t in dag["tasks"]}
    roots = {t for t, task in tasks.items() if t.startswith("transform.") and "arrived" in task["upstream"]}
    assert {t.split(".")[1] for t in roots} == {"staging"}, "staging runs first"
    layers = ["staging", "snapshots", "intermediate", "marts"]
    for earlier, later in itertools.pairwise(layers):
        firsts = [
            t
            for t in tasks
            if t.startswith(f"transform.{later}.")
            and any(u.startswith(f"transform.{earlier}.") for u in tasks[t]["upstream"])
        ]
        assert firsts, f"{later} waits for {earlier}"
    assert {"transform.marts.dim_contacts_model_build", "transform.marts.fct_activities_model_build"} <= set(tasks)
    assert tasks["publish_marts"]["upstream"] == ["audit_marts"]
    assert tasks["publish_marts"]["outlets"] == ["crm://warehouse/marts"]
    # The lease arrived takes is given back whatever happened, without deciding the run's state.
    release = tasks["release_raw"]
    assert release["upstream"] == ["publish_marts"] and release["teardown"]
    assert release["trigger_rule"] == "all_done_setup_success"
    assert [t for t, task in tasks.items() if task["teardown"]] == ["release_raw"]


def test_every_dbt_task_checks_its_selection_and_freezes_the_heap_first(probe: dict[str, Any]) -> None:
    """Cosmos' tasks run ``before_dbt`` (orchestration/transform.py): a deselected node skips, a selected one
    freezes the heap so Cosmos' collection after dbtRunner walks only what dbt created (docs/performance.md)."""
    tasks = [t for t in probe["dags"]["crm_transform"]["tasks"] if t["task_id"].startswith("transform.")]
    assert len(tasks) > 30
    assert {t["operator"] for t in tasks} == {"DbtBuildLocalOperator", "DbtTestLocalOperator"}
    assert {t["pre_execute"] for t in tasks} == {"before_dbt"}
    assert {t["pool"] for t in tasks} == {"dbt"}


def test_the_transforms_layers_share_one_partial_parse_cache(probe: dict[str, Any]) -> None:
    """dbt rejects a partial parse written for another database, so a cache per Cosmos task group would parse the
    whole project once per layer on a new database (decision 25)."""
    tasks = [t for t in probe["dags"]["crm_transform"]["tasks"] if t["task_id"].startswith("transform.")]
    layers = {t["task_id"].split(".")[1] for t in tasks}
    assert layers == {"staging", "snapshots", "intermediate", "marts"}
    (cache,) = {t["cache_dir"] for t in tasks}
    assert cache is not None and cache.endswith("crm_transform__transform__staging"), cache


@pytest.mark.parametrize(
    "offence",
    [
        "from airflow.sdk import Variable\nVariable.get('airbyte_connection_hubspot', default=None)\n",
        "import socket\nsocket.create_connection(('127.0.0.1', 5432), timeout=1)\n",
        "import subprocess\nsubprocess.run(['dbt', '--version'], check=False)\n",
    ],
)
def test_the_probe_catches_io_at_import(tmp_path: Path, offence: str) -> None:
    """The traps are real: a DAG file that reads a Variable, opens a socket or shells out is caught."""
    (tmp_path / "offending_dag.py").write_text(
        "from datetime import datetime\nfrom airflow.sdk import dag\n"
        + offence
        + "@dag(dag_id='offending', start_date=datetime(2026, 1, 1), schedule=None)\ndef offending():\n    pass\n"
        "offending()\n"
    )
    env = {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://nobody@127.0.0.1:9/nothing",
    }
    proc = subprocess.run(
        [sys.executable, str(PROBE), str(tmp_path)], env=env, capture_output=True, text=True, check=False, timeout=300
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["trapped_calls"], result
