"""
### CRM extract: sync → raw gate → admit, one DAG per frequency of `include/crm_streams.yml`

Each stream runs on the cadence its catalogue entry declares (`crm_extract_hourly`, `crm_extract_every_6h`,
`crm_extract_daily`). A run decides at run time how each Airbyte connection syncs: a connection whose Variable
(e.g. `airbyte_connection_hubspot_hourly`) holds an Airbyte connection id runs one Airbyte job (`airbyte_sync`,
mapped over connections, pool `airbyte`); every other stream loads its next batch from the local CRM simulator
(`simulate_sync`, mapped over streams). Raw tables are shaped exactly as Airbyte's Postgres destination writes them.

Each stream's **raw gate** runs a Great Expectations checkpoint over exactly the batch its sync delivered. Rows
failing a row rule (a malformed email, a negative amount) go to `crm_audit.quarantine` with the rule and the reason,
and the rest flows on; a batch failing a batch rule (schema, duplicate keys, volume) or with more failing rows than
the stream's `max_quarantine_share` is stopped: quarantined whole, and its gate fails.

**admit** then emits the asset (`airbyte://<source>/<stream>`) of every stream whose batch passed or was
quarantined, all at once, which schedules `crm_transform`. **held_back** fails the run when a stream's sync failed or
its batch was stopped or never judged, so the run shows red while the other streams' data flows on.

**plan** runs first. Params, validated when a run is created (a bad value is refused, naming the param, before any
task runs): `streams` (a subset of this DAG's streams), `window_start` and `window_end` (a backfill: the simulated
streams deliver again what changed in that window, as a batch of its own, without moving their clocks), `dry_run`
(log what would sync and how, then skip everything).

`catchup` is off and one run at a time (docs/decisions.md #15). Each batch is recorded in `crm_audit.stream_runs`.
Gate results: `crm_audit.gate_results` and `crm_audit.batch_verdicts`; quarantined rows: `crm_audit.quarantine`;
Airbyte jobs: `crm_audit.airbyte_jobs`.
"""

from __future__ import annotations

from airflow.sdk import DAG

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.orchestration.extract import extract_dag, extract_dag_id

EXTRACT_DAGS: dict[str, DAG] = {
    extract_dag_id(cadence): extract_dag(cadence, specs, __doc__ or "")
    for cadence, specs in default_catalogue().by_cadence().items()
}
globals().update(EXTRACT_DAGS)  # module-level names, as the DagBag finds DAGs
