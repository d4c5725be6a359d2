"""What every CRM DAG shares: ownership, retries with exponential backoff, a timeout on every task, and alerts
(email and webhook, when their connections are configured: ``alerts/notifiers.py``) for a task's failure, a run's
recovery and a run's missed deadline.

The first retry waits Airflow's ``[core] default_task_retry_delay`` (20 s in the image and locally, so a
deployment tunes it without a code change), each next one twice as long (with Airflow's jitter), at most
``max_retry_delay``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

from crm_pipeline.alerts.deadline import CALLBACK_PATH
from crm_pipeline.alerts.notifiers import failure_notifiers, recovery_notifiers

# Before the simulator's epoch (2026-01-01), so a backfill can cover the history the first sync loads.
START_DATE = datetime(2025, 1, 1, tzinfo=UTC)
RETRY_BACKOFF = 2.0  # the multiplier: Airflow treats 1 (or True) as "no backoff"
DEADLINE_OVERRIDE = "CRM_RUN_DEADLINE_SECONDS"  # one deadline for every DAG (a staging cluster, the tests)

DEFAULT_ARGS: dict[str, Any] = {
    "owner": "data-platform",
    "retries": 2,
    "retry_exponential_backoff": RETRY_BACKOFF,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=30),
    "on_failure_callback": failure_notifiers(),
}


def run_deadline(within: timedelta) -> DeadlineAlert | None:
    """Alert when a run has not finished ``within`` of being queued. The environment variable
    ``CRM_RUN_DEADLINE_SECONDS`` replaces every DAG's interval (read at parse time: it is not I/O); ``0`` means no
    deadline, which is how ``airflow dags test`` runs the DAGs (``DAGS_TEST_ENVIRONMENT``)."""
    override = os.environ.get(DEADLINE_OVERRIDE)
    if override:
        try:
            within = timedelta(seconds=float(override))
        except ValueError:
            raise ValueError(f"{DEADLINE_OVERRIDE} must be a number of seconds, got {override!r}") from None
    if within <= timedelta(0):
        return None
    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=within,
        callback=AsyncCallback(CALLBACK_PATH),
        name="crm_run_deadline",
    )


# Airflow 3.3's `airflow dags test` fails every run of a DAG with a deadline alert when the run succeeds: its
# in-memory copy of the DAG holds the alerts themselves where the scheduler's holds their ids, and the success
# path looks them up by id. A run under `dags test` has no queue time, so its deadline never applies anyway: the
# local runner and the tests run `dags test` with this environment, and the real scheduler gets the deadlines.
DAGS_TEST_ENVIRONMENT = {DEADLINE_OVERRIDE: "0"}


def dag_alerts(within: timedelta, *, recovery: bool = True) -> dict[str, Any]:
    """The DAG-level alerts, as DAG keyword arguments: recovery after an alerted failure, and the run deadline.

    ``recovery=False`` for a DAG a person runs by hand and watches (``crm_replay``): there is no schedule to
    recover, and its required params make Airflow 3.3's ``dags test`` fail every DAG success callback (it builds
    the callback's context without the run's conf)."""
    alerts: dict[str, Any] = {"deadline": run_deadline(within)}
    if recovery:  # not even an empty list otherwise: Airflow counts that as having a success callback
        alerts["on_success_callback"] = recovery_notifiers()
    return alerts
