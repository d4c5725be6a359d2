"""`make down` stops exactly what `make up` started: tracked by pid AND start time, with every descendant."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from crm_pipeline.local_airflow.processes import ProcessSet, _start_time, kill_tree, process_tree


def test_start_track_and_stop(tmp_path: Path) -> None:
    procs = ProcessSet(tmp_path / "run", tmp_path / "logs")
    entry = procs.start("scheduler", [sys.executable, "-c", "import time; time.sleep(60)"], {})
    assert procs.tracked("scheduler") == entry
    assert procs.start("scheduler", ["false"], {}) == entry, "starting twice reuses the running process"
    assert procs.stop_all(timeout_s=10) == ["scheduler"]
    assert _start_time(entry.pid) is None
    assert procs.running() == []


def test_a_reused_pid_is_never_signalled(tmp_path: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        procs = ProcessSet(tmp_path / "run", tmp_path / "logs")
        procs.run_dir.mkdir(parents=True)
        # A stale pid file whose pid now belongs to someone else (different start time).
        stale = {"pid": bystander.pid, "started": (_start_time(bystander.pid) or 0) - 1, "argv": ["airflow"]}
        (procs.run_dir / "triggerer.json").write_text(json.dumps(stale))
        assert procs.stop_all(timeout_s=1) == []
        assert bystander.poll() is None, "the bystander is still running"
    finally:
        bystander.kill()
        bystander.wait()


# A parent that starts a child in a process group of its own, as Airflow's task supervisor does with each task.
PARENT_WITH_OWN_GROUP_CHILD = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
print(child.pid, flush=True)
time.sleep(120)
"""


def test_stopping_a_component_stops_its_tasks_in_their_own_process_groups(tmp_path: Path) -> None:
    """``killpg`` alone would leave a task process behind: no stray process may outlive ``make down``."""
    procs = ProcessSet(tmp_path / "run", tmp_path / "logs")
    entry = procs.start("celery-worker-1", [sys.executable, "-c", PARENT_WITH_OWN_GROUP_CHILD], {})
    log = procs.log_dir / "celery-worker-1.log"
    deadline = time.monotonic() + 20
    while not log.read_text().strip():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    child = int(log.read_text().split()[0])
    assert process_tree(entry.pid) == [entry.pid, child]
    assert os.getpgid(child) != os.getpgid(entry.pid)
    assert procs.stop_all(timeout_s=5) == ["celery-worker-1"]
    _wait_gone(child)


def test_kill_tree_takes_the_whole_tree_at_once(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT_WITH_OWN_GROUP_CHILD], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert sorted(kill_tree(parent.pid)) == sorted([parent.pid, child])
    assert parent.wait(timeout=10) == -signal.SIGKILL
    _wait_gone(child)


def test_components_are_stopped_last_started_first_and_listed_in_start_order(tmp_path: Path) -> None:
    procs = ProcessSet(tmp_path / "run", tmp_path / "logs")
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    for name in ("redis", "scheduler", "celery-worker-1"):
        procs.start(name, sleeper, {})
        time.sleep(0.01)  # distinct pid-file times
    assert procs.names() == ["redis", "scheduler", "celery-worker-1"]
    assert procs.stop_all(timeout_s=5) == ["redis", "scheduler", "celery-worker-1"]
    assert procs.names() == []


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while _start_time(pid) is not None:
        assert time.monotonic() < deadline, f"process {pid} outlived its component"
        time.sleep(0.05)
