"""The cluster's process supervisor starts a component again when it dies on its own, and stops with it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from crm_pipeline.local_airflow.processes import _start_time, process_tree

# Fails on its first start (as the scheduler does when its database is restarting), runs on the second.
FLAKY = """
import pathlib, sys, time
marker = pathlib.Path(sys.argv[1])
starts = int(marker.read_text()) + 1 if marker.exists() else 1
marker.write_text(str(starts))
if starts == 1:
    sys.exit(1)
time.sleep(120)
"""


def _supervisor(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "crm_pipeline.local_airflow.supervise", "--", *argv],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait(condition: object, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_component_that_fails_or_is_killed_is_started_again_and_stops_with_its_supervisor(tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    supervisor = _supervisor(sys.executable, "-c", FLAKY, str(marker))
    try:
        _wait(lambda: marker.exists() and marker.read_text() == "2" and len(process_tree(supervisor.pid)) == 2)
        (child,) = process_tree(supervisor.pid)[1:]
        subprocess.run(["kill", "-9", str(child)], check=True)  # killed by the kernel, say
        _wait(lambda: marker.read_text() == "3" and len(process_tree(supervisor.pid)) == 2, 30)
        (restarted,) = process_tree(supervisor.pid)[1:]
        assert restarted != child
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=20) == 128 + signal.SIGTERM, "the stop is passed on and ends the loop"
        _wait(lambda: _start_time(restarted) is None)
    finally:
        supervisor.kill()
    out = supervisor.stdout.read() if supervisor.stdout else ""
    assert "exited with 1; starting it again in 1 s" in out and "exited with -9; starting it again in 2 s" in out


def test_a_component_that_finishes_is_not_started_again() -> None:
    supervisor = _supervisor(sys.executable, "-c", "print('done')")
    assert supervisor.wait(timeout=20) == 0
    assert supervisor.stdout is not None and supervisor.stdout.read() == "done\n"
