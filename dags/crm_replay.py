"""
### CRM replay: resync one stream from scratch, re-gate it, rebuild what depends on it

A maintenance DAG, run by hand. **guard** checks the rails: `confirm` must repeat the stream's name; the stream
must sync from the local simulator (an Airbyte stream is cleared in Airbyte, then synced by its extract DAG); its
extract DAG and `crm_transform` must have no run queued or running. **reset** empties the raw table and rewinds the
stream's clock in one transaction. **resync** delivers the whole history again as one batch, **gate** judges it
like any batch, and **admit** emits the stream's asset, so `crm_transform` rebuilds everything downstream (the
incremental facts compare every row, so the result equals a full refresh).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.orchestration.defaults import DEFAULT_ARGS, START_DATE, dag_alerts
from crm_pipeline.orchestration.replay import as_batches, guard, reset
from crm_pipeline.orchestration.tasks import admit, gate_raw, sync_stream

STREAMS = [spec.key for spec in default_catalogue().enabled()]


@dag(
    dag_id="crm_replay",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    **dag_alerts(within=timedelta(hours=3), recovery=False),
    tags=["crm", "maintenance"],
    doc_md=__doc__,
    params={
        "stream": Param(type="string", enum=STREAMS, description="The stream to resync from scratch."),
        "confirm": Param("", type="string", description="Type the stream's name again: its raw table is emptied."),
    },
)
def crm_replay() -> None:
    stream = guard()
    resync = sync_stream.override(task_id="resync")(stream)
    reset(stream) >> resync
    batches = as_batches(resync)
    # One stream: a stopped or crashed gate fails the run by itself, and then there is nothing to admit.
    gate_raw.override(task_id="gate")(stream, batches) >> admit.override(trigger_rule="all_success")(batches)


crm_replay()
