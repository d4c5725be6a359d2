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
        # The tests sync from the simulator, and record that in the warehouses they grant (source_mode.py); a test
        # of Airbyte mode sets it for its own run.
        "CRM_SOURCE_MODE": "simulator",
    }
)


# The modules that take longest outside the slow tier, longest first (docs/testing.md has their measured times).
LONGEST_FIRST = (
    "tests/integration/test_pipeline_end_to_end.py",
    "tests/integration/test_dbt_model.py",
    "tests/integration/test_extract_params.py",
    "tests/integration/test_transform_lease.py",
    "tests/integration/test_raw_gate.py",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--longest-first",
        action="store_true",
        help="run the modules of LONGEST_FIRST first (with xdist: and --no-loadscope-reorder), the rest as collected",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``--longest-first`` (``make test-quick``), the long modules go first: xdist hands modules to its
    workers in this order, so the end-to-end module no longer starts last while the other worker idles."""
    if not config.getoption("--longest-first"):
        return
    rank = {module: index for index, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


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
