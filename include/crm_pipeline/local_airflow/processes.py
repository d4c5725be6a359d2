"""Start and stop Airflow's real components as background processes, tracked by pid files.

``make down`` must stop exactly what ``make up`` started and nothing else. Each component's pid file records
the pid and the process start time (from ``/proc``); a pid is only signalled when both still match, so a pid
the kernel has since reused for someone else's process is left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


@dataclass(frozen=True)
class Tracked:
    name: str
    pid: int
    started: float


def _start_time(pid: int) -> float | None:
    """Process start time in clock ticks since boot (field 22 of /proc/<pid>/stat); None when the process is
    gone or a zombie (exited, waiting to be reaped by its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else float(fields[19])


class ProcessSet:
    """Components started from one run directory (``.local/airflow/run``)."""

    def __init__(self, run_dir: Path, log_dir: Path) -> None:
        self.run_dir = run_dir
        self.log_dir = log_dir

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def tracked(self, name: str) -> Tracked | None:
        try:
            data = json.loads(self._pid_file(name).read_text())
        except (OSError, ValueError):
            return None
        entry = Tracked(name, int(data["pid"]), float(data["started"]))
        return entry if _start_time(entry.pid) == entry.started else None

    def running(self) -> list[Tracked]:
        return [t for name in COMPONENTS if (t := self.tracked(name)) is not None]

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Tracked:
        if (current := self.tracked(name)) is not None:
            return current
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        started = None
        for _ in range(50):
            started = _start_time(proc.pid)
            if started is not None:
                break
            time.sleep(0.02)
        if started is None:
            raise RuntimeError(f"{name} exited at once; see {self.log_dir / (name + '.log')}")
        self._pid_file(name).write_text(json.dumps({"pid": proc.pid, "started": started, "argv": argv}))
        return Tracked(name, proc.pid, started)

    def stop_all(self, timeout_s: float = 30) -> list[str]:
        """SIGTERM each tracked process group, SIGKILL after ``timeout_s``; return the names stopped."""
        stopped = []
        for entry in self.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(entry.pid, signal.SIGTERM)
            stopped.append(entry)
        deadline = time.monotonic() + timeout_s
        for entry in stopped:
            while _start_time(entry.pid) == entry.started and time.monotonic() < deadline:
                time.sleep(0.2)
            if _start_time(entry.pid) == entry.started:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(entry.pid, signal.SIGKILL)
        for name in COMPONENTS:
            self._pid_file(name).unlink(missing_ok=True)
        return [e.name for e in stopped]
