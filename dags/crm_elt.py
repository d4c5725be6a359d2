"""
### CRM ELT: HubSpot + Salesforce → raw → raw gates → dbt (Cosmos) → mart audit → publish

**extract** decides at run time how each Airbyte connection in `include/crm_streams.yml` syncs: connections whose
Variable (e.g. `airbyte_connection_hubspot`) holds an Airbyte connection id run one Airbyte job each
(`airbyte_sync`, mapped over connections, pool `airbyte`); every other stream loads its next batch from the local
CRM simulator (`simulate_sync`, mapped over streams). Raw tables are shaped exactly as Airbyte's Postgres
destination writes them.

Each stream's **raw gate** runs a Great Expectations checkpoint over exactly the batch its sync delivered. Rows
failing a row rule (a malformed email, a negative amount) go to `crm_audit.quarantine` with the rule and the reason,
and the rest flows on; a batch failing a batch rule (schema, duplicate keys, volume) or with more failing rows than
the stream's `max_quarantine_share` is stopped: quarantined whole, its gate fails and its asset
(`airbyte://<source>/<stream>`) is not emitted. **admit** lets the transform run once every batch has a verdict,
so other streams' clean data still reaches the marts; staging reads around quarantined rows. **stopped_batches**
fails the run afterwards when a batch was stopped, so the run shows red.

**transform** is the dbt project rendered by Cosmos from its manifest, a task group per layer (staging,
snapshots, intermediate, marts), one task per model with its tests right after it. It writes the marts into
`marts_build`, never into `marts`. **audit_marts** checks them there (each mart's rules, size against the published
version, reconciliation with raw) and **publish_marts** swaps them in as `marts` in one transaction
(write-audit-publish): analysts see the old marts or the new, never a mix, and a failed audit leaves the published
marts exactly as they were.

Runs on demand (`make demo` drives it with `airflow dags test`). Gate results: `crm_audit.gate_results` and
`crm_audit.batch_verdicts`; quarantined rows: `crm_audit.quarantine`; Airbyte jobs: `crm_audit.airbyte_jobs`;
publishes: `crm_audit.publishes`.
"""

from __future__ import annotations

from airflow.sdk import Asset, TaskGroup, dag

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.orchestration.airbyte import (
    AIRBYTE_CONN_ID,
    SYNC_TIMEOUT,
    CrmAirbyteSyncOperator,
    airbyte_connections,
    collect_batches,
    simulated_streams,
)
from crm_pipeline.orchestration.defaults import DEFAULT_ARGS, START_DATE
from crm_pipeline.orchestration.tasks import (
    admit,
    audit_marts,
    gate_raw,
    publish_marts,
    stopped_batches,
    sync_stream,
)
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
        airbyte = CrmAirbyteSyncOperator.partial(
            task_id="airbyte_sync",
            airbyte_conn_id=AIRBYTE_CONN_ID,
            deferrable=True,
            pool="airbyte",
            execution_timeout=SYNC_TIMEOUT,
            timeout=SYNC_TIMEOUT.total_seconds(),
            map_index_template="{{ task.connection_variable }}",
        ).expand_kwargs(airbyte_connections())
        simulated = sync_stream.override(task_id="simulate_sync").expand(stream_key=simulated_streams())
        batches = collect_batches.override(task_id="batches")([airbyte.task_id, simulated.operator.task_id])
        [airbyte, simulated] >> batches
        gates = [
            gate_raw.override(task_id=f"gate__{spec.source}__{spec.stream}", outlets=[Asset(spec.asset_uri)])(
                spec.key, batches
            )
            for spec in default_catalogue().enabled()
        ]
        admitted = admit(batches)
        gates >> admitted
        gates >> stopped_batches(batches)

    admitted >> dbt_task_group("transform") >> audit_marts() >> publish_marts()


crm_elt()
