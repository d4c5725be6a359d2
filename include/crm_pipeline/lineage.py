"""OpenLineage for the project's own tasks: which warehouse tables a sync, a gate or a publish read and wrote.

Cosmos reports the dbt models' lineage itself (raw table → staging → intermediate → `marts_build`). Our TaskFlow
tasks talk to PostgreSQL through psycopg, not through an Airflow hook, so nothing would report theirs; they tell
Airflow's hook-lineage collector instead, and the OpenLineage provider turns that into each task's inputs and
outputs. The tables are named as dbt names them (`postgres://host:port`, `database.schema.table`), so the extract
task's raw table is the very dataset the staging model reads, and the chain joins up: sync → raw table → gate,
raw table → staging → marts → publish → `marts`.

Nothing is collected, and this costs nothing, when OpenLineage is not configured (Airflow hands out a no-op
collector then).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the URL module imports psycopg, which DAG parsing must not load
    from crm_pipeline.warehouse.url import WarehouseUrl

Table = tuple[str, str]  # (schema, table)


def report_tables(url: WarehouseUrl, *, inputs: Iterable[Table] = (), outputs: Iterable[Table] = ()) -> None:
    """Record the tables the running task read (``inputs``) and wrote (``outputs``) in the warehouse at ``url``.

    Call it once per task, with everything: it starts from a fresh collector. A worker runs each task in a process
    of its own, where that changes nothing; ``airflow dags test`` runs them all in one process, where the collector
    (a per-process singleton) would otherwise carry one task's tables into the next task's event."""
    from airflow.sdk.lineage import get_hook_lineage_collector

    get_hook_lineage_collector.cache_clear()
    collector = get_hook_lineage_collector()
    location = {"host": url.host, "port": url.port, "database": url.database}
    for schema, table in inputs:
        collector.add_input_asset(url, scheme="postgres", asset_kwargs={**location, "schema": schema, "table": table})
    for schema, table in outputs:
        collector.add_output_asset(url, scheme="postgres", asset_kwargs={**location, "schema": schema, "table": table})
