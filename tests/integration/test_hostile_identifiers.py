"""Hostile names (quotes, semicolons, unicode, overlong) never reach SQL as code.

Two walls, each tested on its own:

* validation: every DAG Param that carries a name refuses it before a task runs (and the catalogue refuses it in
  every identifier field, naming file, stream and field: ``tests/unit/test_catalogue.py``);
* quoting: behind validation, SQL is composed with quoted identifiers. A spec whose names bypass validation still
  creates, loads and reads (with the raw gate's query) exactly the table it names, and the canary table beside
  it survives.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from airflow.sdk.definitions.param import ParamValidationError
from hostile_names import HOSTILE

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.paths import DAGS_DIR
from crm_pipeline.quality.rules import raw_batch_query
from crm_pipeline.sources.raw_tables import SyncBatch, encode_row, prepare_raw_table, write_batch
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dag_params() -> dict[tuple[str, str], Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_DIR))
    assert not bag.import_errors
    return {(dag_id, key): dag.params.get_param(key) for dag_id, dag in bag.dags.items() for key in dag.params}


# Free text that never names anything: the replay's confirmation is only compared with the stream param.
NOT_A_NAME = {("crm_replay", "confirm")}


def test_every_dag_param_refuses_hostile_names(dag_params: dict[tuple[str, str], Any]) -> None:
    checked = []
    for (dag_id, key), param in dag_params.items():
        if (dag_id, key) in NOT_A_NAME or param.schema.get("type") == "boolean":
            continue
        for name in HOSTILE:
            value = [name] if param.schema.get("type") == "array" else name
            with pytest.raises(ParamValidationError):
                param.resolve(value)
        checked.append(f"{dag_id}.{key}")
    # The names that matter are among them: which streams to sync or replay, which models to build, the window.
    assert {"crm_replay.stream", "crm_transform.models"} <= set(checked)
    assert any(c.endswith(".streams") for c in checked) and any(c.endswith(".window_start") for c in checked)


def test_names_that_bypass_validation_are_still_only_names(warehouse: WarehouseUrl) -> None:
    stream, column = 'deals"; drop table public.canary; --', "amount'); drop table public.canary; --\u00e9"
    base = default_catalogue().get("hubspot.deals")
    columns = {"id": "string", "updatedAt": "timestamp_with_timezone", column: "string"}
    # model_copy does not validate: this spec carries the names the catalogue would have refused.
    spec = base.model_copy(update={"stream": stream, "columns": columns, "checks": (), "pii_columns": {}})
    with psycopg.connect(warehouse.libpq()) as conn:
        conn.execute("create table public.canary (id int)")
        conn.commit()
        prepare_raw_table(conn, spec)
        batch = SyncBatch(sync_id=42, extracted_at=datetime.now(UTC), generation_id=1)
        record = {"id": "1", "updatedAt": datetime.now(UTC), column: "; drop table public.canary"}
        rows = [encode_row(spec, record, "00000000-0000-4000-8000-000000000001", batch)]
        assert write_batch(conn, spec, rows) == 1
        read = conn.execute(raw_batch_query(spec, 42)).fetchall()
        assert len(read) == 1
        tables = conn.execute(
            "select relname from pg_class where relnamespace = 'raw_hubspot'::regnamespace and relkind = 'r'"
        ).fetchall()
        assert tables == [(stream,)], "exactly the named table, the name kept whole"
        assert conn.execute("select count(*) from public.canary").fetchone() == (0,)
