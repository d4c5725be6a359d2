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

from crm_pipeline.orchestration.airbyte import (
    AIRBYTE_CONN_ID,
    SYNC_TIMEOUT,
    CrmAirbyteSyncOperator,
    collect_batches,
    connection_groups,
    record_airbyte_job,
    route_connection,
)
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
    tags=["crm", "elt", "hubspot", "salesforce"],
    doc_md=__doc__,
)
def crm_elt() -> None:
    with TaskGroup("extract", tooltip="Sync each connection (Airbyte or simulator), then gate each stream's batch"):
        gates = []
        for variable, specs in connection_groups().items():
            sims = [f"extract.sync__{s.source}__{s.stream}" for s in specs]
            airbyte_id, job_id = f"extract.airbyte__{variable}", f"extract.airbyte_job__{variable}"
            airbyte = CrmAirbyteSyncOperator(
                task_id=f"airbyte__{variable}",
                connection_variable=variable,
                connection_id=f"{{{{ var.value.get('{variable}', '') }}}}",
                airbyte_conn_id=AIRBYTE_CONN_ID,
                deferrable=True,
                pool="airbyte",
                execution_timeout=SYNC_TIMEOUT,
                timeout=SYNC_TIMEOUT.total_seconds(),
            )
            job = record_airbyte_job.override(task_id=f"airbyte_job__{variable}")(variable, airbyte.output)
            simulated = [
                sync_stream.override(task_id=f"sync__{s.source}__{s.stream}", doc_md=s.description)(s.key)
                for s in specs
            ]
            route_connection.override(task_id=f"route__{variable}")(variable, airbyte_id, sims) >> [airbyte, *simulated]
            batches = collect_batches.override(task_id=f"batches__{variable}")(variable, job_id, sims)
            [job, *simulated] >> batches
            for spec in specs:
                name = f"{spec.source}__{spec.stream}"
                gates.append(
                    gate_raw.override(task_id=f"gate__{name}", outlets=[Asset(spec.asset_uri)])(spec.key, batches)
                )

    gates >> dbt_task_group("transform") >> audit_marts()


crm_elt()
