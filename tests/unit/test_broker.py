"""The cluster's broker: a configured Redis, else the one running on 6379, else one the project starts and stops.

These start a real ``redis-server`` (``make redis`` installs Debian's) on a free loopback port, and probe a port
nobody listens on to stand for a machine without a Redis service.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_pipeline.errors import BrokerError
from crm_pipeline.local_airflow.broker import OWN_REDIS, REDIS_URL_VARIABLE, ping, queue_name, resolve_broker
from crm_pipeline.local_airflow.processes import ProcessSet, _start_time
from crm_pipeline.warehouse.embedded import _free_port


@pytest.fixture
def procs(tmp_path: Path) -> ProcessSet:
    return ProcessSet(tmp_path / "run", tmp_path / "logs")


@pytest.fixture
def no_service() -> tuple[str, int]:
    """A loopback address where no Redis answers: a machine without the service."""
    return ("127.0.0.1", _free_port())


def test_without_a_redis_the_project_starts_its_own_and_stops_exactly_it(
    procs: ProcessSet, tmp_path: Path, no_service: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REDIS_URL_VARIABLE, raising=False)
    broker = resolve_broker(procs, tmp_path / "redis", service=no_service)
    try:
        assert broker.started_here and broker.url.startswith("redis://127.0.0.1:")
        port = int(broker.url.rsplit(":", 1)[1].split("/")[0])
        assert port != no_service[1] and ping("127.0.0.1", port)
        again = resolve_broker(procs, tmp_path / "redis", service=no_service)
        assert again == broker, "a second cluster-up reuses the Redis the first started"
        own = procs.tracked(OWN_REDIS)
        assert own is not None
    finally:
        stopped = procs.stop_all(timeout_s=10)
    assert stopped == [OWN_REDIS]
    assert _start_time(own.pid) is None and not ping("127.0.0.1", port)


def test_a_running_redis_is_used_and_never_stopped(
    procs: ProcessSet, tmp_path: Path, no_service: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REDIS_URL_VARIABLE, raising=False)
    other = ProcessSet(tmp_path / "someone-else", tmp_path / "logs")  # a Redis this cluster did not start
    service = resolve_broker(other, tmp_path / "other-redis", service=no_service)
    try:
        host, port = "127.0.0.1", int(service.url.rsplit(":", 1)[1].split("/")[0])
        broker = resolve_broker(procs, tmp_path / "redis", service=(host, port))
        assert broker.url == f"redis://{host}:{port}/0" and not broker.started_here
        assert procs.stop_all(timeout_s=5) == [], "nothing of ours to stop"
        assert ping(host, port), "the running Redis was left alone"
    finally:
        other.stop_all(timeout_s=10)


def test_a_configured_redis_must_answer_and_the_error_names_the_variable(
    procs: ProcessSet, tmp_path: Path, no_service: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REDIS_URL_VARIABLE, f"redis://{no_service[0]}:{no_service[1]}/0")
    with pytest.raises(BrokerError, match=f"{REDIS_URL_VARIABLE}: no Redis answers at 127.0.0.1:{no_service[1]}"):
        resolve_broker(procs, tmp_path / "redis", service=no_service)
    monkeypatch.setenv(REDIS_URL_VARIABLE, "amqp://guest@127.0.0.1:5672//")
    with pytest.raises(BrokerError, match="expected redis://host:port/db"):
        resolve_broker(procs, tmp_path / "redis", service=no_service)
    assert procs.names() == [], "nothing was started"


def test_each_checkout_has_its_own_queue(tmp_path: Path) -> None:
    first, second = queue_name(tmp_path / "a" / ".local"), queue_name(tmp_path / "b" / ".local")
    assert first != second and first == queue_name(tmp_path / "a" / ".local")
    assert first.startswith("crm_")
