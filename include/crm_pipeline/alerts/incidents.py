"""Open incidents: which DAGs have alerted a failure and not yet had a run succeed since.

A recovery alert is worth sending only to people who were told of the failure, so the failure alert opens an
incident for its DAG and the DAG's next successful run closes it, with the recovery alert. An incident is an
Airflow Variable, ``crm_open_alert__<dag id>`` (a JSON object: run, task, time): every component that runs
callbacks can read and write Variables (the worker runs task callbacks, the DAG processor DAG callbacks), it needs
no warehouse (which may be what failed), and the Variables page lists the open incidents. Two failures of one DAG
keep the later one.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

PREFIX = "crm_open_alert__"
LOG = logging.getLogger(__name__)


def _key(dag_id: str) -> str:
    return f"{PREFIX}{dag_id}"


def open_incident(dag_id: str, run_id: str, task: str, attempt: str = "") -> None:
    """``attempt`` names the failed try (task id, map index, try number), so a second callback for the same try
    is recognised (``already_alerted``)."""
    from airflow.sdk import Variable

    incident = {
        "run_id": run_id,
        "task": task,
        "attempt": attempt,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    Variable.set(_key(dag_id), json.dumps(incident), description="an alerted failure not yet recovered from")


def already_alerted(dag_id: str, run_id: str, attempt: str) -> bool:
    """Whether this very try's failure was alerted already. Airflow can run a task's failure callback twice: in
    the worker, and again through the DAG processor when the scheduler then handles a late executor event of the
    same try (seen when a deferred task resumed and failed before its deferring process had reported)."""
    incident = open_incident_of(dag_id)
    return bool(incident and incident.get("run_id") == run_id and attempt and incident.get("attempt") == attempt)


def open_incident_of(dag_id: str) -> dict[str, Any] | None:
    from airflow.sdk import Variable

    value = Variable.get(_key(dag_id), default=None)
    if not value:
        return None
    try:
        incident = json.loads(value)
    except ValueError:
        incident = None
    return incident if isinstance(incident, dict) else {"run_id": "?", "task": "?", "at": str(value)}


def close_incident(dag_id: str) -> None:
    from airflow.sdk import Variable

    Variable.delete(_key(dag_id))
