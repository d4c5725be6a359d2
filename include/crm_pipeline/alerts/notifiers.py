"""Where alerts go: an email and a Slack-compatible webhook, each configured by one Airflow connection.

Each channel reads its connection when it sends, never at DAG parse time, and does nothing when the connection is
not configured (a laptop without mail), so alerting is switched on by configuration alone:

* ``crm_alerts_webhook``: the webhook URL in the connection's password (Slack's URL is the credential itself, and
  Airflow masks passwords), or in its host. The body is Slack's ``{"text": ...}``, which Teams and Mattermost
  incoming webhooks accept too.
* ``crm_alerts_smtp``: an SMTP connection (the smtp provider's fields and extras); recipients in its extra
  ``to`` (comma-separated) and the sender in ``from_email``.

Three kinds of alert use them (``orchestration/defaults.py``): a task's failure (task callback, after its last
try), a DAG run's recovery (DAG success callback, when a failure of its DAG was alerted before:
``alerts/incidents.py``), and a missed run deadline (``alerts/deadline.py``, run by the triggerer).
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

from crm_pipeline.alerts.message import Alert, failure_alert, recovery_alert

WEBHOOK_CONN_ID = "crm_alerts_webhook"
SMTP_CONN_ID = "crm_alerts_smtp"
TIMEOUT_SECONDS = 10
LOG = logging.getLogger(__name__)


def _connection(conn_id: str) -> Any | None:
    """The connection, or None when it is not defined (alerting off); other errors propagate."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


def post_webhook(alert: Alert) -> bool:
    """Post the alert to the webhook; False when no webhook is configured."""
    conn = _connection(WEBHOOK_CONN_ID)
    if conn is None:
        return False
    url = conn.password or conn.host or ""
    if not url.startswith(("http://", "https://")):
        LOG.warning("connection %s holds no http(s) URL: no webhook alert sent", WEBHOOK_CONN_ID)
        return False
    body = json.dumps({"text": alert.text()}).encode()
    request = urllib.request.Request(  # noqa: S310  (scheme checked above)
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
        response.read()
    return True


def send_email(alert: Alert) -> bool:
    """Mail the alert through the SMTP connection; False when no mail is configured."""
    conn = _connection(SMTP_CONN_ID)
    if conn is None:
        return False
    extra = conn.extra_dejson or {}
    recipients = [r.strip() for r in str(extra.get("to", "")).split(",") if r.strip()]
    if not recipients:
        LOG.warning("connection %s has no 'to' in its extra: no email alert sent", SMTP_CONN_ID)
        return False
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as hook:
        hook.send_email_smtp(
            to=recipients,
            subject=alert.subject,
            html_content=alert.html(),
            from_email=extra.get("from_email") or "crm-pipeline@localhost",
        )
    return True


def deliver(alert: Alert) -> None:
    """Send the alert on every configured channel. One channel failing does not keep the alert from the other;
    the first error is raised once both were tried."""
    errors: list[Exception] = []
    for send in (send_email, post_webhook):
        try:
            send(alert)
        except Exception as error:
            LOG.error("alert %r not sent by %s: %s", alert.subject, send.__name__, error)
            errors.append(error)
    if errors:
        raise errors[0]


class FailureAlert(BaseNotifier):
    """A task failed after its last try: alert on every channel and open an incident for its DAG (so its next
    successful run sends a recovery alert). Recording the incident is best effort: it never holds back the alert."""

    def notify(self, context: Any) -> None:
        from crm_pipeline.alerts.incidents import already_alerted, open_incident

        alert = failure_alert(context)
        ti = context["ti"]
        attempt = f"{ti.task_id}:{getattr(ti, 'map_index', -1)}:{ti.try_number}"
        try:
            if already_alerted(ti.dag_id, ti.run_id, attempt):
                LOG.info("%s of %s was alerted already: not again", attempt, ti.run_id)
                return
            open_incident(ti.dag_id, ti.run_id, dict(alert.lines)["task"], attempt)
        except Exception as error:
            LOG.warning("incident for %s not recorded, so no recovery alert will follow: %s", ti.dag_id, error)
        deliver(alert)


def alert_recovery(context: Any) -> None:
    """A DAG run succeeded: if its DAG has an open incident, alert the recovery on every channel and close it.

    A plain function, not a ``BaseNotifier``: Airflow 3.3's ``airflow dags test`` hands DAG callbacks a serialized
    DAG, on which a notifier's template rendering fails before it can send anything."""
    from crm_pipeline.alerts.incidents import close_incident, open_incident_of

    dag_run = context.get("dag_run")
    dag_id = getattr(dag_run, "dag_id", None) or context["dag"].dag_id
    run_id = getattr(dag_run, "run_id", None) or str(context.get("run_id"))
    incident = open_incident_of(dag_id)
    if incident is None:
        LOG.info("%s: %s succeeded with no open incident, so no recovery alert", dag_id, run_id)
        return
    deliver(recovery_alert(dag_id, run_id, incident))
    close_incident(dag_id)


def failure_notifiers() -> list[BaseNotifier]:
    """Every CRM task's ``on_failure_callback``."""
    return [FailureAlert()]


def recovery_notifiers() -> list[Callable[[Any], None]]:
    """Every CRM DAG's ``on_success_callback``."""
    return [alert_recovery]
