"""
### CRM ELT: HubSpot → raw → raw gates → dbt (Cosmos) → mart audit

Every enabled stream in `include/crm_streams.yml` gets a **sync** task that loads one batch into its raw table
(`raw_hubspot.<stream>`, shaped exactly as Airbyte's Postgres destination writes it) and a **raw gate** that runs
a Great Expectations checkpoint over exactly that batch. A gate emits the stream's asset
(`airbyte://<source>/<stream>`) only when it passes; a failed error-severity rule fails the task and nothing
downstream runs.

**transform** is the dbt project rendered by Cosmos from its manifest: one task per model, its tests right after
it. **audit_marts** checks the marts analysts read before anyone relies on them.

Runs on demand (`make demo` drives it with `airflow dags test`). Gate results: `crm_audit.gate_results`.
"""

from __future__ import annotations

from airflow.sdk import Asset, TaskGroup, dag

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.orchestration.defaults import DEFAULT_ARGS, START_DATE
from crm_pipeline.orchestration.tasks import audit_marts, gate_raw, sync_stream
from crm_pipeline.orchestration.transform import dbt_task_group


@dag(
    dag_id="crm_elt",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["crm", "elt", "hubspot"],
    doc_md=__doc__,
)
def crm_elt() -> None:
    with TaskGroup("extract", tooltip="Sync each stream, then gate the batch it delivered") as extract:
        for spec in default_catalogue().enabled():
            name = f"{spec.source}__{spec.stream}"
            batch = sync_stream.override(task_id=f"sync__{name}", doc_md=spec.description)(spec.key)
            gate_raw.override(task_id=f"gate__{name}", outlets=[Asset(spec.asset_uri)])(spec.key, batch)

    extract >> dbt_task_group("transform") >> audit_marts()


crm_elt()
