"""The raw contract as data: Airbyte's own columns and how its types land in PostgreSQL.

Kept free of database imports so DAG parsing and gate-rule generation can use it cheaply. Sources for each
mapping are in docs/raw-contract.md (destination-postgres 3.x, direct load).
"""

from __future__ import annotations

import re
import unicodedata

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

MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1


def _java_hash(text: str) -> int:
    """Java's ``String.hashCode``: over UTF-16 code units, wrapped to a signed 32-bit integer."""
    h = 0
    units = text.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i : i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def destination_column_name(name: str) -> str:
    """The column the destination makes of a source field's name (``toPostgresCompatibleName`` in
    destination-postgres' ``PostgresNamingUtils.kt``): accents dropped, whitespace runs and every other character
    outside ``[A-Za-z0-9_]`` made ``_``, case kept, ``_`` before a leading digit; a name over 63 characters keeps
    its first 54, then ``_`` and the last 8 characters of the signed decimal Java hash of the cleaned name."""
    cleaned = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.category(c).startswith("M"))
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", re.sub(r"[ \t\n\x0b\f\r]+", "_", cleaned))
    if cleaned[:1].isdigit():
        cleaned = "_" + cleaned
    if len(cleaned) > MAX_IDENTIFIER:
        cleaned = f"{cleaned[:54]}_{str(_java_hash(cleaned))[-8:]}"
    return cleaned
