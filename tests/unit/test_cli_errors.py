"""A bad CRM_WAREHOUSE_URL stops the CLI with one line naming the variable, and exit code 1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


def _crm(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRM_WAREHOUSE_URL": url, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "crm_pipeline.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", [("warehouse", "up"), ("warehouse", "url"), ("init",), ("demo",)])
def test_malformed_url_is_one_line_and_exit_1(command: tuple[str, ...]) -> None:
    result = _crm(*command, url="mysql://root@localhost/crm")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: CRM_WAREHOUSE_URL must be a postgresql:// URL, got scheme 'mysql'"
    ]


def test_unreachable_url_is_one_line_and_exit_1() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = _crm("warehouse", "up", url=f"postgresql://u:hunter2@127.0.0.1:{port}/crm")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1
    assert len(lines) == 1
    assert lines[0].startswith(f"error: CRM_WAREHOUSE_URL (postgresql://u:***@127.0.0.1:{port}/crm) is unreachable")
    assert "hunter2" not in result.stderr + result.stdout
