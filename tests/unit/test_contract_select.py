"""Reading a raw table in its contract's shape after the destination dropped or retyped a column (the mart
audit's side; the dbt macro ``contract_columns`` is tested on a real table in test_dbt_model.py)."""

from __future__ import annotations

from crm_pipeline.sources.contract import contract_select

CONTRACT = {"Id": "string", "IsDeleted": "boolean", "Tags": "array", "Seen": "timestamp_with_timezone", "N": "number"}
AS_WRITTEN = {
    "_airbyte_raw_id": "character varying",
    "Id": "character varying",
    "IsDeleted": "boolean",
    "Tags": "jsonb",
    "Seen": "timestamp with time zone",
    "N": "numeric",
}


def test_a_table_in_its_contracts_shape_is_read_as_it_is() -> None:
    assert contract_select(CONTRACT, AS_WRITTEN, "r") is None
    assert contract_select(CONTRACT, {**AS_WRITTEN, "New": "character varying"}, "r") is None, "a new column"
    assert contract_select(CONTRACT, {}, "r") is None, "no table: nothing to shape"


def test_dropped_and_retyped_columns_read_back_as_their_contract_types() -> None:
    changed = {**AS_WRITTEN, "IsDeleted": "character varying", "Tags": "character varying", "N": "jsonb"}
    changed["Seen"] = "timestamp without time zone"
    del changed["Id"]
    select = contract_select(CONTRACT, changed, "r")
    assert select is not None
    assert select.split(", ") == [
        'r."_airbyte_raw_id"',
        'r."IsDeleted"::boolean as "IsDeleted"',
        'to_jsonb(r."Tags") as "Tags"',
        '(r."Seen" at time zone \'UTC\') as "Seen"',
        '(r."N" #>> \'{}\')::decimal as "N"',
        'null::varchar as "Id"',
    ]
