"""`make down` stops exactly what `make up` started: tracked by pid AND start time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from crm_pipeline.local_airflow.processes import ProcessSet, _start_time


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
