"""Task callables of the monitoring DAG: stream freshness against the catalogue, and the health page."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import Variable, task
from airflow.sdk.exceptions import AirflowFailException

from crm_pipeline.catalogue import default_catalogue


@task(pool="warehouse")
def check_freshness() -> list[dict[str, Any]]:
    """Fail, and so alert by email and webhook, when a stream has not been admitted for ``crm_freshness_factor``
    (default 2) times its catalogue interval; the message names every stale stream and its lag. Staleness fails
    without retries (``AirflowFailException``: it does not heal within minutes, the next check looks again); a
    lost connection is retried as usual."""
    from crm_pipeline.monitoring.freshness import DEFAULT_FACTOR
    from crm_pipeline.monitoring.freshness import check_freshness as check
    from crm_pipeline.paths import AUDITOR_CONN_ID
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    raw_factor = Variable.get("crm_freshness_factor", default=str(DEFAULT_FACTOR))
    try:
        factor = float(raw_factor)
    except ValueError:
        raise AirflowFailException(f"Variable crm_freshness_factor must be a number, got {raw_factor!r}") from None
    with connect(task_warehouse_url(AUDITOR_CONN_ID)) as conn:
        checks = check(conn, default_catalogue().enabled(), now=datetime.now(UTC), factor=factor)
    stale = [c for c in checks if c.stale]
    if stale:
        raise AirflowFailException(f"{len(stale)} stale CRM streams: " + "; ".join(c.describe() for c in stale))
    return [{"stream": c.stream, "lag_seconds": c.lag.total_seconds() if c.lag else None} for c in checks]


@task(pool="warehouse")
def health_page() -> str:
    """Write the health page (``monitoring/health_page.py``) beside the Airflow logs, where the UI's host can serve
    it; ``make report`` writes the same page locally."""
    from crm_pipeline.monitoring.health_page import write_health_page
    from crm_pipeline.paths import AUDITOR_CONN_ID, report_path
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    with connect(task_warehouse_url(AUDITOR_CONN_ID)) as conn:
        path = write_health_page(conn, default_catalogue().enabled(), report_path(), now=datetime.now(UTC))
    return str(path)
