"""What an alert says: which DAG, task and run failed, why (the task's own message: for a raw gate, the stream,
the rules and a few failing keys), and where the log is; for a recovery or a missed deadline, the same of a run.
Secrets Airflow knows of are redacted from every value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_REASON = 2000  # characters of the exception kept: a gate's message fits; a stack trace does not belong here


@dataclass(frozen=True)
class Alert:
    subject: str
    lines: tuple[tuple[str, str], ...]  # (label, value)

    def text(self) -> str:
        return "\n".join([self.subject, *(f"{label}: {value}" for label, value in self.lines)])

    def html(self) -> str:
        from html import escape

        rows = "".join(f"<tr><th align=left>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in self.lines)
        return f"<p>{escape(self.subject)}</p><table>{rows}</table>"


def _redacted(subject: str, lines: tuple[tuple[str, str], ...]) -> Alert:
    from airflow.sdk.log import redact

    return Alert(str(redact(subject)), tuple((label, str(redact(value))) for label, value in lines))


def run_url(dag_id: str, run_id: str) -> str:
    """The run's page in the Airflow UI (``[api] base_url``)."""
    from urllib.parse import quote

    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/")
    return f"{base}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def failure_alert(context: Any) -> Alert:
    """The alert for a failed task instance, from its Airflow context."""
    ti = context["ti"]
    task = ti.task_id if getattr(ti, "map_index", -1) in (None, -1) else f"{ti.task_id}[{ti.map_index}]"
    if rendered := getattr(ti, "rendered_map_index", None):
        task = f"{ti.task_id}[{rendered}]"
    reason = str(context.get("exception") or "no exception recorded").strip()[:MAX_REASON]
    lines = (
        ("DAG", ti.dag_id),
        ("task", task),
        ("run", ti.run_id),
        ("try", str(ti.try_number)),
        ("reason", reason),
        ("log", ti.log_url),
    )
    return _redacted(f"[crm] {ti.dag_id}: {task} failed", lines)


def recovery_alert(dag_id: str, run_id: str, incident: dict[str, str]) -> Alert:
    """The alert for a DAG run that succeeded while a failure of its DAG was still open (``alerts/incidents.py``)."""
    lines = (
        ("DAG", dag_id),
        ("run", run_id),
        ("recovered from", f"{incident.get('task', '?')} in {incident.get('run_id', '?')}"),
        ("failed at", incident.get("at", "?")),
        ("log", run_url(dag_id, run_id)),
    )
    return _redacted(f"[crm] {dag_id}: recovered, {run_id} succeeded", lines)


def deadline_alert(context: dict[str, Any]) -> Alert:
    """The alert for a run still unfinished at its deadline, from the context Airflow gives a deadline callback
    (the run as the REST API shows it, and the deadline)."""
    dag_run = context.get("dag_run") or {}
    deadline = context.get("deadline") or {}
    dag_id, run_id = str(dag_run.get("dag_id", "?")), str(dag_run.get("dag_run_id", "?"))
    lines = (
        ("DAG", dag_id),
        ("run", run_id),
        ("state", str(dag_run.get("state", "?"))),
        ("queued at", str(dag_run.get("queued_at", "?"))),
        ("deadline", str(deadline.get("deadline_time", "?"))),
        ("log", run_url(dag_id, run_id)),
    )
    return _redacted(f"[crm] {dag_id}: {run_id} missed its deadline", lines)
