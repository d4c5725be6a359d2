"""The peak resident memory of a process tree, sampled while a measurement runs.

``getrusage`` reports the largest single child, not what a run holds at once: the bench process loading the
simulator's rows while ``airflow dags test`` runs dbt in its own process is two footprints that add up. A sampler
thread sums the resident set of this process and every descendant from ``/proc`` a few times a second and keeps the
highest sum. The database server is not a descendant (it runs before the bench and after it): its memory is
PostgreSQL's ``shared_buffers`` and work areas, configured, not the pipeline's.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType

PROC = Path("/proc")


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after its last ")".
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def _rss_kib(pid: int) -> int:
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(root: int) -> int:
    """The summed resident memory of ``root`` and all its descendants, now."""
    children = _children_by_parent()
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _rss_kib(pid)
        stack.extend(children.get(pid, ()))
    return total


class PeakTreeRss:
    """``with PeakTreeRss() as probe: ...`` then ``probe.peak_gib``: the highest summed RSS of this process tree."""

    def __init__(self, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)

    def _sample(self) -> None:
        root = os.getpid()
        while True:
            self.peak_kib = max(self.peak_kib, tree_rss_kib(root))
            if self._stop.wait(self.interval_s):
                return

    @property
    def peak_gib(self) -> float:
        return self.peak_kib / 1024 / 1024

    def __enter__(self) -> PeakTreeRss:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, tree_rss_kib(os.getpid()))
