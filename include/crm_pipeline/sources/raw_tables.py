"""Raw tables written with the statements Airbyte's Postgres destination (3.x, direct load) sends.

One schema per source (``raw_hubspot``), one table per stream, the four ``_airbyte_*`` columns first and NOT
NULL, the stream's columns after them, nullable, with case kept (quoted identifiers), plain indexes and no key
constraints. The three sync modes use the destination's statements:

* full refresh overwrite: COPY into a temporary table in the raw schema, then ``DROP TABLE`` the final table
  (``CASCADE`` only with the destination's ``drop_cascade``) and rename the temporary one in, in one transaction;
  straight into the final table while it is empty or already holds the sync's generation;
* incremental append: COPY straight in, duplicates and all (at-least-once);
* incremental append + deduped: COPY into a temporary table in the raw schema, then one statement updates older
  rows in place with the newest row per key (cursor, then extraction time) and inserts new keys; then the
  temporary table is dropped.

A table's columns follow the stream's catalogue at every sync (``ADD COLUMN``, ``DROP COLUMN``, ``ALTER COLUMN
TYPE`` with the destination's ``USING``), so a value the new type cannot hold fails the sync, as it does there.
See docs/raw-contract.md for the upstream file behind each statement.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from crm_pipeline.catalogue import StreamSpec
from crm_pipeline.sources.contract import AIRBYTE_COLUMNS, JSON_TYPES, POSTGRES_TYPES
from crm_pipeline.warehouse.ddl import ddl_transaction, ensure_schema, table_exists


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


def _create_table(conn: psycopg.Connection, spec: StreamSpec, schema: str, table: str) -> None:
    """The destination's table creation: drop any table of that name and create it, in one transaction (every
    loader creates with replace), then the indexes."""
    target = sql.Identifier(schema, table)
    with conn.transaction():
        conn.execute(sql.SQL("drop table if exists {}").format(target))
        conn.execute(_create_table_sql(spec, target))
    for stmt in _index_sql(spec, schema, table):
        conn.execute(stmt)


def create_raw_table(conn: psycopg.Connection, spec: StreamSpec) -> None:
    """Create the stream's schema and table as the destination does, unless the table exists; an existing table
    is left as it is (a real one may hold columns our catalogue does not know, such as custom properties)."""
    ensure_schema(conn, spec.raw_schema)
    if not table_exists(conn, spec.raw_schema, spec.stream):
        _create_table(conn, spec, spec.raw_schema, spec.stream)


def match_columns(conn: psycopg.Connection, spec: StreamSpec, *, drop_cascade: bool = False) -> None:
    """Make the table's columns those of the sync's catalogue (``spec``), as the destination does at the start of
    every sync, in one transaction: ``ADD COLUMN`` what is new, ``DROP COLUMN`` what the catalogue no longer has
    (``CASCADE`` only with ``drop_cascade``), ``ALTER COLUMN ... TYPE`` what changed type, with the destination's
    ``USING``. Nothing runs when the table matches. A value the new type cannot hold fails the statement, and
    with it the sync."""
    table = table_ident(spec)
    present = dict(
        conn.execute(
            "select attname, format_type(atttypid, atttypmod) from pg_attribute"
            " where attrelid = %s::regclass and attnum > 0 and not attisdropped",
            (table.as_string(conn),),
        ).fetchall()
    )
    wanted = {name: POSTGRES_TYPES[kind] for name, kind in spec.columns.items()}
    spelled = dict(
        conn.execute(  # as the catalog spells them (``decimal`` is ``numeric``), to compare with format_type
            "select t, format_type(t::regtype, null) from unnest(%s::text[]) as t", (sorted(set(wanted.values())),)
        ).fetchall()
    )
    ours = {name for name, _ in AIRBYTE_COLUMNS}
    cascade = sql.SQL(" cascade" if drop_cascade else "")
    changes: list[sql.Composable] = [
        sql.SQL("alter table {} add column {} {}").format(table, sql.Identifier(name), sql.SQL(kind))
        for name, kind in wanted.items()
        if name not in present
    ]
    changes += [
        sql.SQL("alter table {} drop column {}{}").format(table, sql.Identifier(name), cascade)
        for name in present
        if name not in wanted and name not in ours
    ]
    changes += [
        sql.SQL("alter table {} alter column {c} type {} using {}").format(
            table, sql.SQL(kind), _using(sql.Identifier(name), present[name], kind), c=sql.Identifier(name)
        )
        for name, kind in wanted.items()
        if name in present and present[name] != spelled[kind]
    ]
    if changes:
        with conn.transaction():
            # The destination's JDBC session runs in its JVM's zone, UTC in Airbyte's images: a cast between
            # timestamp types reads or writes naive values as UTC.
            conn.execute("set local timezone to 'UTC'")
            for change in changes:
                conn.execute(change)


def _using(column: sql.Identifier, old: str, new: str) -> sql.Composable:
    """The destination's ``USING``: ``to_jsonb(c)`` into jsonb, ``c #>> '{}'`` from jsonb into varchar, else a
    plain cast ``c::type``, which fails on a value the type cannot hold."""
    if new == "jsonb":
        return sql.SQL("to_jsonb({})").format(column)
    if old == "jsonb" and new == "varchar":
        return sql.SQL("{} #>> '{{}}'").format(column)
    return sql.SQL("{}::{}").format(column, sql.SQL(new))


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


def _first_and_last(name: str, n: int = 8) -> str:
    return name if len(name) <= 2 * n else name[:n] + name[-n:]


def temp_table_name(schema: str, table: str) -> str:
    """The destination's temporary table for ``schema.table``, which it creates in the same schema: both names
    shortened to their first and last 8 characters, then 32 hex of a SHA-256 of the legacy raw table name of
    ``table_airbyte_tmp`` (the load CDK's ``DefaultTempTableNameGenerator`` and ``concatenateRawTableName``,
    docs/raw-contract.md). PostgreSQL cuts a 64-character result to 63."""
    tmp = f"{table}_airbyte_tmp"
    underscores = max((len(run) for run in re.findall("_+", schema + tmp)), default=0)
    raw_name = f"{schema}_raw{'_' * (max(underscores, 1) + 1)}stream_{tmp}"
    digest = hashlib.sha256(raw_name.encode()).hexdigest()[:32]
    return (_first_and_last(schema) + _first_and_last(table) + digest)[:63]


def prepare_raw_table(conn: psycopg.Connection, spec: StreamSpec, *, drop_cascade: bool = False) -> None:
    """A sync's start, under the DDL lock: create the table if missing, then match its columns to ``spec``, the
    sync's catalogue (``match_columns``). Call it before ``write_batch``."""
    with ddl_transaction(conn):
        create_raw_table(conn, spec)
        match_columns(conn, spec, drop_cascade=drop_cascade)


def write_batch(
    conn: psycopg.Connection, spec: StreamSpec, rows: Rows, *, generation_id: int = 1, drop_cascade: bool = False
) -> int:
    """Write one sync's encoded rows (tuples, or ``CopyText`` blocks) with the stream's sync mode, in one
    transaction (the destination commits the temporary table's load before the swap or upsert; one transaction
    here keeps a simulated sync's rows and its clock together). ``generation_id``: the sync's generation, which an
    overwrite replaces older ones with. The table must be prepared (``prepare_raw_table``)."""
    columns = column_names(spec)
    with conn.transaction():
        if spec.sync_mode == "incremental_append":
            return _copy_rows(conn, table_ident(spec), columns, rows)
        if spec.sync_mode == "full_refresh_overwrite":
            return _overwrite(conn, spec, columns, rows, generation_id, drop_cascade)
        return _upsert(conn, spec, columns, rows)


def overwrites_through_temp(conn: psycopg.Connection, spec: StreamSpec, generation: int) -> bool:
    """Whether a sync of ``generation`` loads a temporary table and swaps it in: a full refresh overwrite whose
    table holds rows of an older generation (the destination reads one row's). Otherwise it writes straight in."""
    if spec.sync_mode != "full_refresh_overwrite" or not table_exists(conn, spec.raw_schema, spec.stream):
        return False
    held = conn.execute(sql.SQL("select _airbyte_generation_id from {} limit 1").format(table_ident(spec))).fetchone()
    return held is not None and held[0] < generation


def _overwrite(
    conn: psycopg.Connection, spec: StreamSpec, columns: list[str], rows: Rows, generation: int, drop_cascade: bool
) -> int:
    """The destination's overwrite: while the table holds an older generation, load a temporary table and swap it
    in (``DROP TABLE`` and ``ALTER TABLE ... RENAME``, one transaction); into an empty table, or one already of
    this generation (a retried attempt), straight in. Without ``drop_cascade`` a view on the table stops the swap."""
    table = table_ident(spec)
    if not overwrites_through_temp(conn, spec, generation):
        return _copy_rows(conn, table, columns, rows)
    temp = temp_table_name(spec.raw_schema, spec.stream)
    _create_table(conn, spec, spec.raw_schema, temp)
    count = _copy_rows(conn, sql.Identifier(spec.raw_schema, temp), columns, rows)
    with conn.transaction():
        conn.execute(sql.SQL("drop table if exists {}{}").format(table, sql.SQL(" cascade" if drop_cascade else "")))
        conn.execute(
            sql.SQL("alter table {} rename to {}").format(
                sql.Identifier(spec.raw_schema, temp), sql.Identifier(spec.stream)
            )
        )
    return count


def _newer(spec: StreamSpec) -> sql.Composable:
    """Whether the batch's row ``n`` is newer than the table's row ``t`` of the same key: a later cursor (a null
    cursor is oldest), then a later extraction."""
    ext = sql.Identifier("_airbyte_extracted_at")
    if not spec.cursor_field:
        return sql.SQL("t.{ext} < n.{ext}").format(ext=ext)
    return sql.SQL(
        "(t.{cur} < n.{cur}"
        " or (t.{cur} = n.{cur} and t.{ext} < n.{ext})"
        " or (t.{cur} is null and n.{cur} is not null)"
        " or (t.{cur} is null and n.{cur} is null and t.{ext} < n.{ext}))"
    ).format(cur=sql.Identifier(spec.cursor_field), ext=ext)


def _upsert(conn: psycopg.Connection, spec: StreamSpec, columns: list[str], rows: Rows) -> int:
    """The destination's dedup: COPY into a temporary table, then one statement that keeps the newest row per key
    (cursor descending, nulls last, then extraction time), updates the table's older rows of those keys in place
    and inserts the new keys; then the temporary table is dropped."""
    temp = temp_table_name(spec.raw_schema, spec.stream)
    _create_table(conn, spec, spec.raw_schema, temp)
    staged = sql.Identifier(spec.raw_schema, temp)
    count = _copy_rows(conn, staged, columns, rows)
    pk = sql.SQL(", ").join(map(sql.Identifier, spec.primary_key))
    order = [sql.SQL("{} desc nulls last").format(sql.Identifier(spec.cursor_field))] if spec.cursor_field else []
    order.append(sql.SQL("{} desc").format(sql.Identifier("_airbyte_extracted_at")))
    match = sql.SQL(" and ").join(sql.SQL("t.{c} = n.{c}").format(c=sql.Identifier(c)) for c in spec.primary_key)
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    conn.execute(
        sql.SQL(
            "with newest as (select distinct on ({pk}) {cols} from {staged} order by {pk}, {order}),"
            " updated as (update {table} t set {assignments} from newest n where {match} and {newer})"
            " insert into {table} ({cols}) select {cols} from newest n"
            " where not exists (select from {table} t where {match})"
        ).format(
            pk=pk,
            cols=cols,
            staged=staged,
            order=sql.SQL(", ").join(order),
            table=table_ident(spec),
            assignments=sql.SQL(", ").join(sql.SQL("{c} = n.{c}").format(c=sql.Identifier(c)) for c in columns),
            match=match,
            newer=_newer(spec),
        )
    )
    conn.execute(sql.SQL("drop table {}").format(staged))
    return count
