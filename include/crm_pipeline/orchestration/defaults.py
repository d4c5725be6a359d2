"""Task defaults every CRM DAG shares: ownership, retries with backoff, a timeout on every task, and failure alerts
(email and webhook, when their connections are configured: ``alerts/notifiers.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from crm_pipeline.alerts.notifiers import failure_notifiers

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=30),
    "on_failure_callback": failure_notifiers(),
}
