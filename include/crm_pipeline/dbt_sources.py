"""dbt's source definitions, generated from the catalogue: the raw tables, their columns, PII and freshness.

One declaration per stream drives dbt too: ``crm catalogue-docs`` writes
``dbt_project/models/staging/<source>/_<source>__sources.yml`` and a test fails when the committed files differ.
Freshness follows the stream's declared frequency: a warning once no batch arrived for twice the interval, an error
after four times (the monitoring DAG uses the same 2x rule). Each column carries its contract type
(``data_type``, the PostgreSQL type the destination gives it). The same contract is written as a macro,
``dbt_project/macros/raw_contract.sql``, which ``gated_source`` reads to see a raw table in that shape whatever the
destination has since done to it (docs/raw-contract.md, "A column dropped or retyped"): a macro, because dbt's
unit tests, which read raw tables through it too, have no graph of sources to look the types up in.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import yaml
from croniter import croniter

from crm_pipeline.catalogue import Catalogue, StreamSpec, default_catalogue, parse_frequency
from crm_pipeline.paths import PROJECT_DIR
from crm_pipeline.sources.contract import POSTGRES_TYPES

STAGING_DIR = PROJECT_DIR / "dbt_project" / "models" / "staging"
CONTRACT_MACRO = PROJECT_DIR / "dbt_project" / "macros" / "raw_contract.sql"
HEADER = "# Generated from include/crm_streams.yml by `crm catalogue-docs`. Do not edit by hand.\n"
SOURCE_DESCRIPTIONS = {
    "hubspot": "Raw HubSpot objects as Airbyte's Postgres destination writes them (docs/raw-contract.md).",
    "salesforce": "Raw Salesforce objects as Airbyte's Postgres destination writes them (docs/raw-contract.md).",
}


def interval(spec: StreamSpec) -> timedelta:
    """The stream's sync interval; for a cron schedule, the longest gap between its next runs over a week."""
    frequency = parse_frequency(spec.frequency)
    if isinstance(frequency, timedelta):
        return frequency
    runs = croniter(frequency, datetime(2026, 1, 5, tzinfo=UTC))
    fires = [runs.get_next(datetime) for _ in range(8 * 24)]
    return max(b - a for a, b in pairwise(fires))


def _period(delta: timedelta) -> dict[str, Any]:
    hours = delta.total_seconds() / 3600
    return {"count": int(hours), "period": "hour"} if hours < 48 else {"count": int(hours // 24), "period": "day"}


def _table(spec: StreamSpec) -> dict[str, Any]:
    every = interval(spec)
    table: dict[str, Any] = {
        "name": spec.stream,
        "description": f"{spec.description.strip()} Sync mode {spec.sync_mode}, every {spec.frequency}.",
        "config": {
            "freshness": {"warn_after": _period(every * 2), "error_after": _period(every * 4)},
            "meta": {"owner": spec.owner, "primary_key": list(spec.primary_key), "asset": spec.asset_uri},
        },
    }
    table["columns"] = [_column(spec, name, kind) for name, kind in spec.columns.items()]
    return table


def _column(spec: StreamSpec, name: str, kind: str) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "data_type": POSTGRES_TYPES[kind]}
    if name in spec.pii_columns:
        column["config"] = {"meta": {"pii": spec.pii_columns[name]}}
    return column


def render(catalogue: Catalogue, source: str) -> str:
    specs = [s for s in catalogue.streams if s.source == source]
    document = {
        "version": 2,
        "sources": [
            {
                "name": source,
                "description": SOURCE_DESCRIPTIONS[source],
                "schema": specs[0].raw_schema,
                "loaded_at_field": "_airbyte_extracted_at",
                "quoting": {"identifier": True, "column": True},
                "tables": [_table(s) for s in specs],
            }
        ],
    }
    return HEADER + yaml.safe_dump(document, sort_keys=False, width=118)


def render_contract(catalogue: Catalogue) -> str:
    """The macro ``raw_contract(source, table)``: the raw table's schema and its columns' PostgreSQL types."""
    contracts = {
        spec.key: {
            "schema": spec.raw_schema,
            "columns": {name: POSTGRES_TYPES[kind] for name, kind in spec.columns.items()},
        }
        for spec in catalogue.streams
    }
    lines = [
        "{#- Generated from include/crm_streams.yml by `crm catalogue-docs`. Do not edit by hand.",
        "    Each stream's raw table: its schema and its columns' contract types (read by gated_source). -#}",
        "{% macro raw_contract(source_name, table_name) -%}",
        "    {%- set contracts = {",
        *(f"        {json.dumps(key)}: {json.dumps(value)}," for key, value in contracts.items()),
        "    } -%}",
        "    {{ return(contracts.get(source_name ~ '.' ~ table_name)) }}",
        "{%- endmacro %}",
    ]
    return "\n".join(lines) + "\n"


def path_for(source: str) -> Path:
    return STAGING_DIR / source / f"_{source}__sources.yml"


def write() -> list[Path]:
    catalogue = default_catalogue()
    written = []
    for source in sorted({s.source for s in catalogue.streams}):
        path = path_for(source)
        path.write_text(render(catalogue, source))
        written.append(path)
    CONTRACT_MACRO.write_text(render_contract(catalogue))
    return [*written, CONTRACT_MACRO]
