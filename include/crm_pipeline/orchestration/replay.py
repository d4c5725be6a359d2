"""Task callables of the replay DAG: resync one stream from scratch, re-gate it, and let the transform rebuild.

Guard rails, because a replay throws a raw table away: the ``confirm`` param must repeat the stream's name, the
stream must sync from the local simulator (an Airbyte connection is reset in Airbyte: a *clear* job, then its
extract DAG), and neither the stream's extract DAG nor the transform may be running or queued, so no sync races
the reset and no transform reads a table while it is emptied.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from crm_pipeline import source_mode
from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.orchestration.extract import TRANSFORM_DAG_ID, extract_dag_id

ACTIVE = ["queued", "running"]


@task(pool="warehouse")
def guard() -> str:
    """The stream to replay, once every guard rail holds; fails naming the one that does not."""
    from crm_pipeline.orchestration.airbyte import configured_connections

    context = get_current_context()
    params = context.get("params") or {}
    stream, confirm = params.get("stream"), params.get("confirm")
    if confirm != stream:
        raise AirflowFailException(f"param confirm must repeat the stream to replay ({stream!r}), got {confirm!r}")
    spec = default_catalogue().get(str(stream))
    if source_mode.source_mode() == source_mode.AIRBYTE:
        raise AirflowFailException(
            f"{source_mode.MODE_VARIABLE} is 'airbyte': {spec.key} comes from Airbyte, so clear the stream in Airbyte,"
            " then run its extract DAG (a replay resyncs from the simulator)"
        )
    if configured := configured_connections([spec.key]):
        (variable,) = configured
        raise AirflowFailException(
            f"{spec.key} syncs through Airbyte ({variable}): clear the stream in Airbyte, then run its extract DAG"
        )
    for dag_id in (extract_dag_id(spec.cadence), TRANSFORM_DAG_ID):
        if active := context["ti"].get_dr_count(dag_id=dag_id, states=ACTIVE):
            raise AirflowFailException(f"{dag_id} has {active} run(s) queued or running: replay {spec.key} after them")
    return spec.key


@task(pool="warehouse")
def reset(stream_key: str) -> dict[str, Any]:
    """Empty the raw table and rewind the stream's simulated clock, in one transaction; the stream's quarantine
    rows go too (the rows they point at are gone). Verdicts and run audit rows stay: they are history."""
    from psycopg import sql

    from crm_pipeline.orchestration.replacing_writes import register
    from crm_pipeline.paths import LOADER_CONN_ID
    from crm_pipeline.sources.raw_tables import table_ident
    from crm_pipeline.warehouse.ddl import table_exists
    from crm_pipeline.warehouse.locate import connect, task_warehouse_url

    spec = default_catalogue().get(stream_key)
    with connect(task_warehouse_url(LOADER_CONN_ID)) as conn:
        # Emptying a raw table replaces rows: registered like a sync (never under a reading transform), and the
        # registration lasts through the resync until the gate judged it, so no transform reads the empty table.
        register(conn, [spec], get_current_context(), always=True)
    with connect(task_warehouse_url(LOADER_CONN_ID)) as conn, conn.transaction():
        rows = 0
        if table_exists(conn, spec.raw_schema, spec.stream):
            rows = conn.execute(sql.SQL("select count(*) from {}").format(table_ident(spec))).fetchone()[0]  # type: ignore[index]
            conn.execute(sql.SQL("truncate {}").format(table_ident(spec)))
        if table_exists(conn, "crm_simulator", "sync_state"):
            conn.execute("delete from crm_simulator.sync_state where stream = %s", (spec.key,))
        if table_exists(conn, "crm_audit", "quarantine"):  # through the audited function: the loader may not
            conn.execute("select crm_audit.clear_quarantine_of_emptied_stream(%s)", (spec.key,))
    return {"stream": spec.key, "raw_rows_removed": rows}


@task
def as_batches(summary: dict[str, Any]) -> dict[str, Any]:
    """The resync's batch in the shape the gate and admit take."""
    return {summary["stream"]: summary}
