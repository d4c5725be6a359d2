"""Raw tables exactly as Airbyte's Postgres destination (3.x, direct load) writes them.

One schema per source (``raw_hubspot``), one table per stream, the four ``_airbyte_*`` columns first and NOT
NULL, the stream's columns after them, nullable, with case kept (quoted identifiers), plain indexes and no key
constraints. The three sync modes behave as the destination's SQL does:

* full refresh overwrite: load a fresh table, then drop and rename in one transaction;
* incremental append: COPY straight in, duplicates and all (at-least-once);
* incremental append + deduped: load a temp table, keep the newest row per key (cursor, then extraction time),
  update older rows in place and insert new keys. Into an empty table (a first sync) the batch is copied straight
  in and only a key the batch repeats is reduced to its newest row: the same result, without staging every row.

See docs/raw-contract.md for the sources of each choice. The local simulator writes through this module, so
whatever the pipeline reads locally has the shape Airbyte gives it in production.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from crm_pipeline.catalogue import StreamSpec
from crm_pipeline.sources.contract import AIRBYTE_COLUMNS, JSON_TYPES, POSTGRES_TYPES
from crm_pipeline.warehouse.ddl import ddl_transaction, ensure_schema


@dataclass(frozen=True)
class SyncBatch:
    """What identifies one sync's rows: Airbyte stamps every row with these."""

    sync_id: int
    extracted_at: datetime
    generation_id: int


@dataclass(frozen=True)
class CopyText:
    """Rows already in COPY's text format, in ``column_names`` order: a generator that renders whole blocks of
    rows writes them as they are, where a row at a time would cost more than PostgreSQL's parsing of it."""

    rows: int
    text: str


Rows = Iterable[tuple[Any, ...] | CopyText]


def table_ident(spec: StreamSpec) -> sql.Identifier:
    return sql.Identifier(spec.raw_schema, spec.stream)


def column_names(spec: StreamSpec) -> list[str]:
    return [name for name, _ in AIRBYTE_COLUMNS] + list(spec.columns)


def _create_table_sql(spec: StreamSpec, target: sql.Composable) -> sql.Composed:
    cols = [sql.SQL("{} {} not null").format(sql.Identifier(n), sql.SQL(t)) for n, t in AIRBYTE_COLUMNS]
    cols += [sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(POSTGRES_TYPES[t])) for n, t in spec.columns.items()]
    return sql.SQL("create table if not exists {} ({})").format(target, sql.SQL(", ").join(cols))


def _index_sql(spec: StreamSpec, schema: str, table: str) -> list[sql.Composed]:
    on = sql.Identifier(schema, table)
    stmts = [
        sql.SQL("create index if not exists {} on {} ({})").format(
            sql.Identifier(f"idx_extracted_at_{table}"[:63]), on, sql.Identifier("_airbyte_extracted_at")
        )
    ]
    if spec.sync_mode == "incremental_append_deduped":
        stmts.append(
            sql.SQL("create index if not exists {} on {} ({})").format(
                sql.Identifier(f"idx_pk_{table}"[:63]),
                on,
                sql.SQL(", ").join(map(sql.Identifier, spec.primary_key)),
            )
        )
        if spec.cursor_field:
            stmts.append(
                sql.SQL("create index if not exists {} on {} ({})").format(
                    sql.Identifier(f"idx_cursor_{table}"[:63]), on, sql.Identifier(spec.cursor_field)
                )
            )
    return stmts


def ensure_raw_table(conn: psycopg.Connection, spec: StreamSpec) -> None:
    """Create the schema, table and indexes if missing, add back contract columns the table lacks and change
    back a column whose type drifted (the source sends the column, or its contract type, again: the change is
    propagated, as Airbyte does). Alters nothing when the table matches the contract, so a normal sync takes no
    exclusive lock."""
    ensure_schema(conn, spec.raw_schema)
    conn.execute(_create_table_sql(spec, table_ident(spec)))
    present = {
        name: actual
        for name, actual in conn.execute(
            "select attname, format_type(atttypid, atttypmod) from pg_attribute"
            " where attrelid = %s::regclass and attnum > 0 and not attisdropped",
            (table_ident(spec).as_string(conn),),
        )
    }
    contract_types = sorted({POSTGRES_TYPES[kind] for kind in spec.columns.values()})
    spelled = dict(
        conn.execute(  # as the catalog spells them (``decimal`` is ``numeric``), to compare with format_type
            "select t, format_type(t::regtype, null) from unnest(%s::text[]) as t", (contract_types,)
        ).fetchall()
    )
    for name, airbyte_type in spec.columns.items():
        wanted = POSTGRES_TYPES[airbyte_type]
        if name not in present:
            conn.execute(
                sql.SQL("alter table {} add column if not exists {} {}").format(
                    table_ident(spec), sql.Identifier(name), sql.SQL(wanted)
                )
            )
        elif present[name] != spelled[wanted]:
            _restore_type(conn, spec, name, present[name], wanted)
    for stmt in _index_sql(spec, spec.raw_schema, spec.stream):
        conn.execute(stmt)


# Values of the old type that fit the contract type; the rest become null (the destination's typing nulls a value
# it cannot cast, rather than failing the sync). ``{}`` is the column as text.
_FITS: dict[str, str] = {
    "boolean": "lower(btrim({})) in ('t', 'true', 'f', 'false', 'y', 'yes', 'n', 'no', 'on', 'off', '1', '0')",
    "bigint": r"{} ~ '^\s*[-+]?\d{{1,18}}\s*$'",
    "decimal": r"{} ~ '^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$'",
}


def _restore_type(conn: psycopg.Connection, spec: StreamSpec, column: str, actual: str, wanted: str) -> None:
    """The source sends a retyped column with its contract type again: the destination changes the column back,
    as it propagated the change before. No view reads a raw table (staging models are tables), so nothing stands
    in the way."""
    ident = sql.Identifier(column)
    as_text = sql.SQL("{}::text").format(ident)
    if wanted == "timestamp with time zone" and actual == "timestamp without time zone":
        using = sql.SQL("{} at time zone 'UTC'").format(ident)  # what the naive values meant
    elif wanted == "jsonb":
        using = sql.SQL("to_jsonb({})").format(ident)
    elif wanted in _FITS:
        using = sql.SQL("case when {} then btrim({})::{} end").format(
            sql.SQL(_FITS[wanted]).format(as_text), as_text, sql.SQL(wanted)
        )
    else:
        using = sql.SQL("{}::{}").format(as_text, sql.SQL(wanted))
    conn.execute(
        sql.SQL("alter table {} alter column {} type {} using {}").format(
            table_ident(spec), ident, sql.SQL(wanted), using
        )
    )


def encode_row(
    spec: StreamSpec,
    record: dict[str, Any],
    raw_id: str,
    batch: SyncBatch,
    changes: Sequence[dict[str, str]] = (),
) -> tuple[Any, ...]:
    """A record as a COPY row in column order; JSON-typed values as JSON text."""
    meta = json.dumps({"sync_id": batch.sync_id, "changes": list(changes)})
    values: list[Any] = [raw_id, batch.extracted_at, meta, batch.generation_id]
    for name, airbyte_type in spec.columns.items():
        value = record.get(name)
        values.append(json.dumps(value) if value is not None and airbyte_type in JSON_TYPES else value)
    return tuple(values)


def _copy_rows(conn: psycopg.Connection, target: sql.Composable, columns: list[str], rows: Rows) -> int:
    count = 0
    stmt = sql.SQL("copy {} ({}) from stdin").format(target, sql.SQL(", ").join(map(sql.Identifier, columns)))
    with conn.cursor() as cur, cur.copy(stmt, writer=QueuedLibpqWriter(cur)) as copy:
        # The writer sends from a thread of its own, so the next block renders while PostgreSQL parses this one.
        for row in rows:
            if isinstance(row, CopyText):
                copy.write(row.text)
                count += row.rows
            else:
                copy.write_row(row)
                count += 1
    return count


def prepare_raw_table(conn: psycopg.Connection, spec: StreamSpec) -> None:
    """``ensure_raw_table`` in its own transaction under the DDL lock: call it before ``write_batch``."""
    with ddl_transaction(conn):
        ensure_raw_table(conn, spec)


def write_batch(conn: psycopg.Connection, spec: StreamSpec, rows: Rows) -> int:
    """Write one sync's encoded rows (tuples, or ``CopyText`` blocks) with the stream's sync-mode semantics, in
    one transaction. The table must exist (``prepare_raw_table``): DDL runs under its own lock, not inside the
    load."""
    columns = column_names(spec)
    with conn.transaction():
        if spec.sync_mode == "incremental_append":
            return _copy_rows(conn, table_ident(spec), columns, rows)
        if spec.sync_mode == "full_refresh_overwrite":
            return _overwrite(conn, spec, columns, rows)
        return _upsert(conn, spec, columns, rows)


def _overwrite(conn: psycopg.Connection, spec: StreamSpec, columns: list[str], rows: Rows) -> int:
    """Replace the table's rows in one transaction. Airbyte drops the table and renames a new one in; we truncate and
    refill instead: readers see the same thing (the old rows or the new, never a mix), and the dbt staging views
    that depend on the table survive (a DROP would need CASCADE and take them with it)."""
    staged = sql.Identifier(f"_overwrite_{spec.stream}"[:63])
    conn.execute(sql.SQL("create temp table {} (like {}) on commit drop").format(staged, table_ident(spec)))
    count = _copy_rows(conn, staged, columns, rows)
    col_list = sql.SQL(", ").join(map(sql.Identifier, columns))
    conn.execute(sql.SQL("truncate {}").format(table_ident(spec)))
    conn.execute(sql.SQL("insert into {} ({}) select {} from {}").format(table_ident(spec), col_list, col_list, staged))
    conn.execute(sql.SQL("drop table {}").format(staged))
    return count


def _newest_first(spec: StreamSpec) -> sql.Composable:
    """The order in which a key's rows are newest first: cursor, then extraction time."""
    order = [sql.SQL("{} desc nulls last").format(sql.Identifier(spec.cursor_field))] if spec.cursor_field else []
    order.append(sql.SQL("{} desc").format(sql.Identifier("_airbyte_extracted_at")))
    return sql.SQL(", ").join(order)


def _load_into_empty(conn: psycopg.Connection, spec: StreamSpec, columns: list[str], rows: Rows) -> int:
    """A first load (the table is empty): COPY straight in, then drop the older rows of any key the batch holds
    more than once. The result is the merge's, without staging every row twice."""
    table = table_ident(spec)
    count = _copy_rows(conn, table, columns, rows)
    pk = sql.SQL(", ").join(map(sql.Identifier, spec.primary_key))
    repeated = conn.execute(
        sql.SQL("select exists (select from {} group by {} having count(*) > 1)").format(table, pk)
    ).fetchone()
    if repeated and repeated[0]:
        conn.execute(
            sql.SQL(
                "delete from {table} where ctid in (select ctid from ("
                " select ctid, row_number() over (partition by {pk} order by {order}) as _rn from {table}) s"
                " where _rn > 1)"
            ).format(table=table, pk=pk, order=_newest_first(spec))
        )
    return count


def _upsert(conn: psycopg.Connection, spec: StreamSpec, columns: list[str], rows: Rows) -> int:
    if conn.execute(sql.SQL("select not exists (select from {})").format(table_ident(spec))).fetchone() == (True,):
        return _load_into_empty(conn, spec, columns, rows)
    staged = sql.Identifier(f"_staged_{spec.stream}"[:63])
    conn.execute(sql.SQL("create temp table {} (like {}) on commit drop").format(staged, table_ident(spec)))
    count = _copy_rows(conn, staged, columns, rows)
    pk = sql.SQL(", ").join(map(sql.Identifier, spec.primary_key))
    newest = sql.Identifier(f"_newest_{spec.stream}"[:63])
    conn.execute(
        sql.SQL(
            "create temp table {newest} on commit drop as select * from ("
            " select *, row_number() over (partition by {pk} order by {order}) as _rn from {staged}) s where _rn = 1"
        ).format(newest=newest, pk=pk, staged=staged, order=_newest_first(spec))
    )
    conn.execute(sql.SQL("alter table {} drop column _rn").format(newest))
    match = sql.SQL(" and ").join(sql.SQL("t.{c} = n.{c}").format(c=sql.Identifier(c)) for c in spec.primary_key)
    ext = sql.Identifier("_airbyte_extracted_at")
    if spec.cursor_field:
        cur = sql.Identifier(spec.cursor_field)
        newer = sql.SQL(
            "(t.{cur} < n.{cur}"
            " or (t.{cur} = n.{cur} and t.{ext} < n.{ext})"
            " or (t.{cur} is null and n.{cur} is not null)"
            " or (t.{cur} is null and n.{cur} is null and t.{ext} < n.{ext}))"
        ).format(cur=cur, ext=ext)
    else:
        newer = sql.SQL("t.{ext} < n.{ext}").format(ext=ext)
    assignments = sql.SQL(", ").join(sql.SQL("{c} = n.{c}").format(c=sql.Identifier(c)) for c in columns)
    conn.execute(
        sql.SQL("update {target} t set {assignments} from {newest} n where {match} and {newer}").format(
            target=table_ident(spec), assignments=assignments, newest=newest, match=match, newer=newer
        )
    )
    col_list = sql.SQL(", ").join(map(sql.Identifier, columns))
    conn.execute(
        sql.SQL(
            "insert into {target} ({cols}) select {cols} from {newest} n"
            " where not exists (select 1 from {target} t where {match})"
        ).format(target=table_ident(spec), cols=col_list, newest=newest, match=match)
    )
    # Dropped here, not only "on commit": inside a caller's transaction this block is a savepoint, and the next
    # sync of the same stream on the same connection would find them still there.
    conn.execute(sql.SQL("drop table {}, {}").format(staged, newest))
    return count
