"""With CRM_WAREHOUSE_URL set, the project uses that PostgreSQL and starts nothing of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration


def _crm(env: dict[str, str], action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crm_pipeline.cli", "warehouse", action],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_configured_url_is_used_and_no_embedded_server_starts(warehouse: WarehouseUrl, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CRM_WAREHOUSE_URL": warehouse.libpq(),
        "CRM_LOCAL_DIR": str(tmp_path / "local"),
        "PYTHONWARNINGS": "ignore",
    }
    result = _crm(env, "up")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"warehouse ready at {warehouse.redacted()} (configured by CRM_WAREHOUSE_URL)"
    assert not (tmp_path / "local" / "warehouse").exists(), "no embedded server was initialised"
    down = _crm(env, "down")
    assert "not ours to stop" in down.stdout
