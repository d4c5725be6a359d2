"""Whose socket listens on a port: the check `make up` relies on when two checkouts start at once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from crm_pipeline.local_airflow.port_owner import owns_port


def _listener() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


def test_a_process_owns_the_port_it_listens_on_and_no_other() -> None:
    ours, port = _listener()
    theirs, other_port = _listener()
    with ours, theirs:
        assert owns_port(os.getpid(), port)
        stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert not owns_port(stranger.pid, port), "a process without the socket does not own the port"
        finally:
            stranger.kill()
            stranger.wait()
    assert not owns_port(os.getpid(), port), "a closed socket is nobody's"
    assert not owns_port(os.getpid(), other_port)


def test_a_descendant_holding_the_socket_makes_its_ancestor_the_owner() -> None:
    """The api-server's socket may be held by a child (uvicorn's workers, or under the cluster's supervisor)."""
    sock, port = _listener()
    with sock:
        holder = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(30)"], pass_fds=[sock.fileno()], start_new_session=True
        )
        parent = os.getpid()
        try:
            sock.close()  # only the child holds it now
            assert owns_port(holder.pid, port)
            assert owns_port(parent, port), "the child is in the parent's tree"
        finally:
            holder.kill()
            holder.wait()
