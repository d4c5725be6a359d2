"""The deadline callback: a run still unfinished at its deadline (``orchestration/defaults.py``) alerts by email
and webhook, like a failure.

Airflow's scheduler notices the missed deadline and hands this coroutine to the triggerer (an ``AsyncCallback``),
which imports it by its dotted path; it gets the run as the REST API shows it and the deadline as ``context``. The
channels are synchronous (smtplib, urllib) and read Airflow connections, so they run in a worker thread, as the
providers' hooks do inside triggers, and never block the triggerer's event loop.
"""

from __future__ import annotations

from typing import Any

from crm_pipeline.alerts.message import deadline_alert
from crm_pipeline.alerts.notifiers import deliver

CALLBACK_PATH = "crm_pipeline.alerts.deadline.deadline_missed"


async def deadline_missed(context: dict[str, Any] | None = None, **_: Any) -> str:
    """Alert that a run missed its deadline; returns the subject (the triggerer records it as the result)."""
    from asgiref.sync import sync_to_async

    alert = deadline_alert(context or {})
    await sync_to_async(deliver)(alert)
    return alert.subject
