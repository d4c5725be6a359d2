"""Which stretch of history an extract run delivers again, if any: the backfill window.

Two ways to ask for one, with the same effect (a batch of its own through the gate; the streams' clocks do not
move, so the next scheduled sync carries on where it was):

* by hand: the params ``window_start`` and ``window_end`` of a triggered run;
* by Airflow: a run of ``airflow backfill create`` (run type ``backfill``) delivers its data interval, so a
  backfill of 7 days is 7 runs of one day each, which may run side by side (``--max-active-runs``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

Window = tuple[datetime, datetime]


def _run_type(dag_run: Any) -> str:
    run_type = getattr(dag_run, "run_type", None)
    return str(getattr(run_type, "value", run_type))


def backfill_window(context: Any) -> Window | None:
    """The run's window: from its params, else its data interval when Airflow's backfill created it, else None.
    Bad params fail the task naming the param (each was validated alone when the run was created)."""
    params = context.get("params") or {}
    start, end = params.get("window_start"), params.get("window_end")
    if (start is None) != (end is None):
        raise AirflowFailException("params window_start and window_end go together: give both or neither")
    if start is not None:
        window = {name: datetime.fromisoformat(params[name]) for name in ("window_start", "window_end")}
        if naive := [name for name, moment in window.items() if moment.tzinfo is None]:
            raise AirflowFailException(f"param {naive[0]} must carry a time zone (e.g. 2026-01-01T00:00:00Z)")
        if not window["window_start"] < window["window_end"]:
            raise AirflowFailException(f"param window_start ({start}) must be before window_end ({end})")
        return window["window_start"], window["window_end"]
    dag_run = context.get("dag_run")
    if dag_run is not None and _run_type(dag_run) == "backfill":
        interval_start, interval_end = dag_run.data_interval_start, dag_run.data_interval_end
        if interval_start is not None and interval_end is not None and interval_start < interval_end:
            return interval_start, interval_end
    return None
