"""Test-wide setup. Airflow reads its configuration at import, so the environment is set here, first.

Unit and DAG tests get an ``AIRFLOW_HOME`` in a temporary directory and a SQLite metadata DB they never touch;
integration tests build their own environment around a real PostgreSQL (see tests/integration/conftest.py).
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from _pytest.reports import TestReport

PROJECT_DIR = Path(__file__).resolve().parents[1]
_home = Path(tempfile.mkdtemp(prefix="crm-tests-airflow-"))

os.environ.update(
    {
        "AIRFLOW_HOME": str(_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_DIR / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_home / 'unused.db'}",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "CRM_DBT_MANIFEST": os.environ.get(
            "CRM_DBT_MANIFEST", str(PROJECT_DIR / ".local" / "dbt" / "manifest" / "manifest.json")
        ),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "False",
        "GX_ANALYTICS_ENABLED": "False",
    }
)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Wall time per test module (setup, call and teardown summed), after pytest's slowest tests: what
    docs/testing.md's table is measured from. Under pytest-xdist a module runs on one worker, so its sum is the
    time that worker spent on it."""
    per_module: dict[str, float] = defaultdict(float)
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, TestReport):
                per_module[report.nodeid.split("::")[0]] += report.duration
    if not per_module:
        return
    terminalreporter.write_sep("=", "time per module")
    for module, seconds in sorted(per_module.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{seconds:8.1f} s  {module}")
    terminalreporter.write_line(f"{sum(per_module.values()):8.1f} s  in all (the workers' times added up)")
