"""Airflow notifiers for the alerts, on every CRM task's failure (``DEFAULT_ARGS``).

Each reads its Airflow connection when it fires, never at DAG parse time, and does nothing when the connection is
not configured (a laptop without mail), so alerting is switched on by configuration alone:

* ``crm_alerts_webhook``: the webhook URL in the connection's password (Slack's URL is the credential itself, and
  Airflow masks passwords), or in its host. The body is Slack's ``{"text": ...}``, which Teams and Mattermost
  incoming webhooks accept too.
* ``crm_alerts_smtp``: an SMTP connection (the smtp provider's fields and extras); recipients in its extra
  ``to`` (comma-separated) and the sender in ``from_email``.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

from crm_pipeline.alerts.message import failure_alert

WEBHOOK_CONN_ID = "crm_alerts_webhook"
SMTP_CONN_ID = "crm_alerts_smtp"
TIMEOUT_SECONDS = 10


def _connection(conn_id: str) -> Any | None:
    """The connection, or None when it is not defined (alerting off); other errors propagate."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return Connection.get(conn_id)
    except AirflowNotFoundException:
        return None


class WebhookAlert(BaseNotifier):
    """Post the failure to a Slack-compatible incoming webhook."""

    def notify(self, context: Any) -> None:
        conn = _connection(WEBHOOK_CONN_ID)
        if conn is None:
            return
        url = conn.password or conn.host or ""
        if not url.startswith(("http://", "https://")):
            self.log.warning("connection %s holds no http(s) URL: no webhook alert sent", WEBHOOK_CONN_ID)
            return
        body = json.dumps({"text": failure_alert(context).text()}).encode()
        request = urllib.request.Request(  # noqa: S310  (scheme checked above)
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            response.read()


class EmailAlert(BaseNotifier):
    """Mail the failure through the SMTP connection."""

    def notify(self, context: Any) -> None:
        conn = _connection(SMTP_CONN_ID)
        if conn is None:
            return
        extra = conn.extra_dejson or {}
        recipients = [r.strip() for r in str(extra.get("to", "")).split(",") if r.strip()]
        if not recipients:
            self.log.warning("connection %s has no 'to' in its extra: no email alert sent", SMTP_CONN_ID)
            return
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        alert = failure_alert(context)
        with SmtpHook(smtp_conn_id=SMTP_CONN_ID) as hook:
            hook.send_email_smtp(
                to=recipients,
                subject=alert.subject,
                html_content=alert.html(),
                from_email=extra.get("from_email") or "crm-pipeline@localhost",
            )


def failure_notifiers() -> list[BaseNotifier]:
    return [EmailAlert(), WebhookAlert()]
