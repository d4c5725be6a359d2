"""A port already in use is never taken over: another one is picked."""

from __future__ import annotations

import socket

from crm_pipeline.warehouse.embedded import _free_port


def test_busy_preferred_port_gives_another_free_one() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        chosen = _free_port(taken)
        assert chosen != taken
    with socket.socket() as check:
        check.bind(("127.0.0.1", chosen))  # it really is free


def test_free_preferred_port_is_kept() -> None:
    port = _free_port()
    assert _free_port(port) == port
