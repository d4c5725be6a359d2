"""
### CRM monitor: stream freshness and the pipeline health page

Every 30 minutes, **health_page** writes the health page (freshness per stream, gate verdicts per stream, rows
loaded per day) to `$CRM_REPORT_DIR/health.html` (locally `.local/report/health.html`, also `make report`). Then
**check_freshness** compares each stream's newest admitted batch (`crm_audit.stream_runs`,
written by the extract DAGs' `admit`) with the frequency its catalogue entry declares: a stream not admitted for
`crm_freshness_factor` (Variable, default 2) times its interval is stale, and the task fails, so the failure
alerts (email and webhook) name every stale stream and its lag, and the run shows red. Each check is kept in
`crm_audit.freshness_checks`.

No catchup (a missed check is not worth running late), one run at a time.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag

from crm_pipeline.orchestration.defaults import DEFAULT_ARGS, START_DATE, dag_alerts
from crm_pipeline.orchestration.monitor import check_freshness, health_page


@dag(
    dag_id="crm_monitor",
    schedule=timedelta(minutes=30),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    **dag_alerts(within=timedelta(minutes=15)),
    tags=["crm", "monitoring"],
    doc_md=__doc__,
)
def crm_monitor() -> None:
    health_page() >> check_freshness()


crm_monitor()
