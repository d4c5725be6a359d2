"""The Celery broker of the local cluster: a Redis that already runs, else one the project starts itself.

Resolution, first match wins:

1. ``CRM_REDIS_URL``: a Redis someone configured (it must answer, or the cluster does not start);
2. a Redis already answering on ``127.0.0.1:6379`` (a developer's or CI machine's service): used, never stopped;
3. otherwise ``redis-server`` from PATH (Debian's package; ``make redis`` installs it) started on a free loopback
   port, keeping nothing on disk, tracked like the Airflow components so ``make cluster-down`` stops it.

Several clusters may share one Redis: each checkout's tasks travel on a queue of its own (:func:`queue_name`), so
one cluster's workers never take another's tasks.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from crm_pipeline.errors import BrokerError
from crm_pipeline.local_airflow.processes import ProcessSet

REDIS_URL_VARIABLE = "CRM_REDIS_URL"
SERVICE = ("127.0.0.1", 6379)
OWN_REDIS = "redis"  # the component name of a Redis the project started


@dataclass(frozen=True)
class Broker:
    url: str
    started_here: bool  # True when ``make cluster-down`` is to stop it

    def describe(self) -> str:
        return f"{self.url} ({'started by the project' if self.started_here else 'already running, left running'})"


def ping(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when a Redis answers PING on ``host:port`` (RESP inline command, no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def queue_name(local_dir: Path) -> str:
    """The Celery queue of the cluster whose state lives in ``local_dir``: stable per checkout, distinct between
    checkouts (and between the tests' clusters), so clusters sharing a Redis keep to their own tasks."""
    return "crm_" + hashlib.sha256(str(local_dir.resolve()).encode()).hexdigest()[:10]


def _host_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise BrokerError(f"{REDIS_URL_VARIABLE}={url!r}: expected redis://host:port/db")
    return parts.hostname, parts.port or 6379


def resolve_broker(processes: ProcessSet, redis_dir: Path, *, service: tuple[str, int] = SERVICE) -> Broker:
    """The broker to use, starting our own Redis when none is configured or running (see the module doc)."""
    if configured := os.environ.get(REDIS_URL_VARIABLE, "").strip():
        host, port = _host_port(configured)
        if not ping(host, port):
            raise BrokerError(f"{REDIS_URL_VARIABLE}: no Redis answers at {host}:{port}")
        return Broker(configured, started_here=False)
    if (own := processes.tracked(OWN_REDIS)) is not None:
        port = int((redis_dir / "port").read_text())
        if ping("127.0.0.1", port):
            return Broker(f"redis://127.0.0.1:{port}/0", started_here=True)
        processes.stop([own.name])
    if ping(*service):
        return Broker(f"redis://{service[0]}:{service[1]}/0", started_here=False)
    return start_own_redis(processes, redis_dir)


def start_own_redis(processes: ProcessSet, redis_dir: Path, timeout_s: float = 20) -> Broker:
    """``redis-server`` on a free loopback port, in the foreground of a tracked process, persisting nothing."""
    from crm_pipeline.warehouse.embedded import _free_port

    binary = shutil.which("redis-server")
    if binary is None:
        raise BrokerError(
            "no Redis answers on 127.0.0.1:6379 and redis-server is not installed: run `make redis` (Debian's "
            f"redis-server package) or set {REDIS_URL_VARIABLE}"
        )
    redis_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    argv += ["--dir", str(redis_dir), "--protected-mode", "yes"]
    processes.start(OWN_REDIS, argv, {"PATH": os.environ.get("PATH", "")})
    (redis_dir / "port").write_text(str(port))
    deadline = time.monotonic() + timeout_s
    while not ping("127.0.0.1", port):
        if time.monotonic() > deadline or processes.tracked(OWN_REDIS) is None:
            processes.stop([OWN_REDIS])
            raise BrokerError(f"redis-server did not answer on 127.0.0.1:{port}; see {processes.log_dir}/redis.log")
        time.sleep(0.1)
    return Broker(f"redis://127.0.0.1:{port}/0", started_here=True)
