"""The raw contract as data: Airbyte's own columns and how its types land in PostgreSQL.

Kept free of database imports so DAG parsing and gate-rule generation can use it cheaply. Sources for each
mapping are in docs/raw-contract.md (destination-postgres 3.x, direct load).
"""

from __future__ import annotations

POSTGRES_TYPES: dict[str, str] = {
    "string": "varchar",
    "integer": "bigint",
    "number": "decimal",
    "boolean": "boolean",
    "date": "date",
    "timestamp_with_timezone": "timestamp with time zone",
    "timestamp_without_timezone": "timestamp",
    "object": "jsonb",
    "array": "jsonb",
    "union": "jsonb",
}
AIRBYTE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_airbyte_raw_id", "varchar"),
    ("_airbyte_extracted_at", "timestamp with time zone"),
    ("_airbyte_meta", "jsonb"),
    ("_airbyte_generation_id", "bigint"),
)
JSON_TYPES = frozenset({"object", "array", "union"})
