"""The erasure DAG's task: one person erased through ``warehouse/erasure.py``, with the request's params checked."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

LOG = logging.getLogger(__name__)


@task(pool="warehouse")
def erase() -> dict[str, Any]:
    """Erase the person the params name; fail (no retry can help) when they name nobody or somebody twice."""
    from crm_pipeline.paths import WAREHOUSE_CONN_ID
    from crm_pipeline.warehouse.erasure import ErasureRequestError, erase_person
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    context = get_current_context()
    params = context.get("params") or {}
    try:
        # The owner's connection: the one task that deletes from every schema (raw, staging, marts, quarantine).
        with connect(task_warehouse_url(WAREHOUSE_CONN_ID)) as conn:
            erasure = erase_person(
                conn, email=params.get("email"), crm_id=params.get("crm_id"), run_id=context["run_id"]
            )
    except ErasureRequestError as bad:
        raise AirflowFailException(str(bad)) from None
    summary = erasure.summary()
    if erasure.changed:
        LOG.info("erased %s source records; rows deleted: %s", summary["records_found"], summary["rows_deleted"])
    else:
        LOG.info("nothing to erase: no record matches (already erased, or never here)")
    return summary
