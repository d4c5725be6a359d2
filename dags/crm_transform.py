"""
### CRM transform: dbt (Cosmos) → mart audit → publish, whenever new raw data is admitted

Scheduled on the streams' assets (`airbyte://<source>/<stream>`, one per catalogue entry): an extract DAG's
**admit** task emits them for the batches its raw gates let through, so this DAG runs when, and only when, new
data arrived. Events that arrive while a run is going start the next run (one run at a time: two dbt builds must
not write `marts_build` together).

**arrived** fixes which judged batches the run reads and decides what it builds. From then until the run
publishes or fails (**release_raw**, its teardown), syncs that replace raw rows (dedup and overwrite streams) wait,
so the mart audit reconciles with the raw dbt read. It builds only the dbt nodes downstream of
the streams that changed since the last publish (param `models` = `changed`, the default); every other dbt task is
skipped, and each mart it would have rebuilt is carried over from the published version. With `models` = `all`
(after editing a model) or `full_refresh` (incremental models rebuilt from scratch), everything is built.

**transform** is the dbt project rendered by Cosmos from its manifest, a task group per layer (staging,
snapshots, intermediate, marts), one task per model with its tests right after it. Staging reads only batches a
raw gate judged, without their quarantined rows. Models are incremental where it pays (the facts). dbt writes the
marts into `marts_build`, never into `marts`. **audit_marts** checks them there
(each mart's rules, size against the published version, reconciliation with raw) and **publish_marts** swaps them
in as `marts` in one transaction (write-audit-publish): analysts see the old marts or the new, never a mix, and a
failed audit leaves the published marts exactly as they were. Publishing emits `crm://warehouse/marts`.

Personal data reaches the marts hashed (keyed HMAC, pepper from the `crm_pii_pepper` connection, which
**arrived** installs in the warehouse on first use) or masked, as the catalogue says per column; the mart audit
refuses a value that looks untreated (docs/security.md). After a pepper rotation the next run builds every model.

Publishes: `crm_audit.publishes`; audit results: `crm_audit.gate_results`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Param, dag

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.orchestration.defaults import DEFAULT_ARGS, START_DATE, dag_alerts
from crm_pipeline.orchestration.tasks import arrived, audit_marts, publish_marts, release_raw, stream_assets
from crm_pipeline.orchestration.transform import dbt_task_group


@dag(
    dag_id="crm_transform",
    schedule=stream_assets(default_catalogue().enabled()),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    **dag_alerts(within=timedelta(hours=2)),
    tags=["crm", "transform", "dbt"],
    doc_md=__doc__,
    params={
        "full_refresh": Param(
            False, type="boolean", description="dbt --full-refresh: rebuild incremental models from scratch."
        ),
        "models": Param(
            "changed",
            type="string",
            enum=["changed", "all"],
            description="changed: only models downstream of streams that changed since the last publish; all: every"
            " model (after a model was edited).",
        ),
    },
)
def crm_transform() -> None:
    # release_raw is a teardown without a setup: it runs whatever happened upstream (not only after a setup
    # succeeded), and the run's state still follows publish_marts. A setup would need all_success right after it.
    arrived() >> dbt_task_group("transform") >> audit_marts() >> publish_marts() >> release_raw().as_teardown()


crm_transform()
