"""Start and stop Airflow's real components as background processes, tracked by pid files.

``make down`` must stop exactly what ``make up`` (or ``make cluster-up``) started and nothing else. Each
component's pid file records the pid and the process start time (from ``/proc``); a pid is only signalled when
both still match, so a pid the kernel has since reused for someone else's process is left alone.

A component's tree is stopped, not only its process group: Airflow's task supervisor puts each task process in
a group of its own (so it can signal the task alone), and a Celery worker's tasks must not outlive the worker.
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
PID_SUFFIX = ".json"


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


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant (by parent pid, from ``/proc``), parents first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (parent := _parent(int(entry.name))) is not None:
            children.setdefault(parent, []).append(int(entry.name))
    tree, queue = [], [pid]
    while queue:
        current = queue.pop(0)
        tree.append(current)
        queue.extend(sorted(children.get(current, [])))
    return tree


def kill_tree(pid: int) -> list[int]:
    """SIGKILL ``pid`` and its descendants at once, as a crashed machine would lose them; the pids killed."""
    tree = process_tree(pid)
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
    return tree


REAP_TIMEOUT_S = 10


class ProcessSet:
    """Components started from one run directory (``.local/airflow/run``)."""

    def __init__(self, run_dir: Path, log_dir: Path) -> None:
        self.run_dir = run_dir
        self.log_dir = log_dir

    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}{PID_SUFFIX}"

    def tracked(self, name: str) -> Tracked | None:
        try:
            data = json.loads(self._pid_file(name).read_text())
        except (OSError, ValueError):
            return None
        entry = Tracked(name, int(data["pid"]), float(data["started"]))
        return entry if _start_time(entry.pid) == entry.started else None

    def names(self) -> list[str]:
        """Every component with a pid file, in the order they were started."""
        files = sorted(self.run_dir.glob(f"*{PID_SUFFIX}"), key=lambda p: p.stat().st_mtime_ns)
        return [p.name.removesuffix(PID_SUFFIX) for p in files]

    def running(self) -> list[Tracked]:
        return [t for name in self.names() if (t := self.tracked(name)) is not None]

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Tracked:
        if (current := self.tracked(name)) is not None:
            return current
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Private files: a component's log may hold what its tasks print, and the api-server writes the admin
        # password file. umask 077 for everything the component creates, 0600 for its log.
        path = self.log_dir / f"{name}.log"
        log = os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab")
        path.chmod(0o600)  # a log made before by a looser version
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            umask=0o077,
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

    def stop(self, names: list[str], timeout_s: float = 30) -> list[str]:
        """SIGTERM each named component's process group, in the order given, then SIGKILL whatever is left of its
        tree (task processes in groups of their own included) after ``timeout_s``; the names that were running."""
        stopped = [t for name in names if (t := self.tracked(name)) is not None]
        # Each member with its start time: a pid that exits meanwhile and is reused is never signalled.
        trees = {e.name: [(pid, _start_time(pid)) for pid in process_tree(e.pid)] for e in stopped}
        killed: list[tuple[int, float]] = []
        for entry in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(entry.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while _start_time(entry.pid) == entry.started and time.monotonic() < deadline:
                time.sleep(0.2)
            for pid, started in trees[entry.name]:
                if started is not None and _start_time(pid) == started:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    killed.append((pid, started))
        # SIGKILL is delivered, not awaited: a process in uninterruptible sleep exits only when that ends. Wait for
        # it (a zombie counts as gone), so nothing of the component runs when stop returns.
        deadline = time.monotonic() + REAP_TIMEOUT_S
        while any(_start_time(pid) == started for pid, started in killed) and time.monotonic() < deadline:
            time.sleep(0.1)
        for name in names:
            self._pid_file(name).unlink(missing_ok=True)
        return [e.name for e in stopped]

    def stop_all(self, timeout_s: float = 30) -> list[str]:
        """Stop every tracked component, the last started first (workers before the broker they talk to); the
        names in the order they were started."""
        order = self.names()
        return sorted(self.stop(list(reversed(order)), timeout_s), key=order.index)
