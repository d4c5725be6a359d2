"""What an alert says: which DAG, task and run failed, why (the task's own message: for a raw gate, the stream,
the rules and a few failing keys), and where the log is. Secrets Airflow knows of are redacted."""

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


def failure_alert(context: Any) -> Alert:
    """The alert for a failed task instance, from its Airflow context."""
    from airflow.sdk.log import redact

    ti = context["ti"]
    task = ti.task_id if getattr(ti, "map_index", -1) in (None, -1) else f"{ti.task_id}[{ti.map_index}]"
    reason = str(context.get("exception") or "no exception recorded").strip()[:MAX_REASON]
    lines = (
        ("DAG", ti.dag_id),
        ("task", task),
        ("run", ti.run_id),
        ("try", str(ti.try_number)),
        ("reason", reason),
        ("log", ti.log_url),
    )
    redacted = tuple((label, str(redact(value))) for label, value in lines)
    return Alert(f"[crm] {ti.dag_id}: {task} failed", redacted)
