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


# information_schema's names for the types POSTGRES_TYPES spells otherwise
_SPELLED = {"character varying": "varchar", "numeric": "decimal", "timestamp without time zone": "timestamp"}


def contract_select(contract: dict[str, str], present: dict[str, str], alias: str) -> str | None:
    """The select list that reads a raw table in its contract's shape, or None when it already has it.

    ``contract`` maps the stream's columns to Airbyte types, ``present`` the table's columns to their
    information_schema types. A dropped column reads as a typed null; a retyped one is cast back as the
    destination's own USING clauses would restore it. The dbt macro ``contract_columns`` (``gated_source``) does
    the same for staging, so the mart audit reconciles against what staging read.
    """
    want_types = {name: POSTGRES_TYPES[kind] for name, kind in contract.items()}
    columns, changed = [], False
    for name, spelled in present.items():
        have = _SPELLED.get(spelled, spelled)
        want = want_types.get(name, have)
        quoted = f"{alias}.{_quote(name)}"
        if want == have:
            columns.append(quoted)
            continue
        changed = True
        if have == "jsonb":
            columns.append(f"({quoted} #>> '{{}}')::{want} as {_quote(name)}")
        elif want == "jsonb":
            columns.append(f"to_jsonb({quoted}) as {_quote(name)}")
        elif have == "timestamp" and want == "timestamp with time zone":
            columns.append(f"({quoted} at time zone 'UTC') as {_quote(name)}")
        else:
            columns.append(f"{quoted}::{want} as {_quote(name)}")
    for name, want in want_types.items():
        if name not in present:
            changed = True
            columns.append(f"null::{want} as {_quote(name)}")
    return ", ".join(columns) if changed and present else None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
