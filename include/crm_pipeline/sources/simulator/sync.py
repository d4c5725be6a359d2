"""One simulated Airbyte sync of one stream: advance the stream's simulated clock, emit what changed, write it.

Each stream keeps its own clock in ``crm_simulator.sync_state``: the first sync delivers everything as of the
simulation epoch (the historical load), each later sync the window of one catalogue interval. Sync ids come from
one sequence, as Airbyte's job ids do. The state row is updated in the same transaction as the raw write, so a sync
that fails leaves neither rows nor an advanced clock behind.

Records stream from the generator through COPY: memory stays bounded at any scale. Streams that hold people,
companies or sales reps also record which simulated entity each source id is (``crm_simulator.identity``): the
ground truth that identity resolution is scored against.

Faults make a sync deliver a bad batch of a named kind, for the quality-gate tests.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, ValidationError

from crm_pipeline import source_mode
from crm_pipeline.catalogue import (
    MAX_INTERVAL,
    Catalogue,
    StreamSpec,
    default_catalogue,
    frequency_interval,
    parse_frequency,
)
from crm_pipeline.sources import raw_tables
from crm_pipeline.sources.contract import destination_column_name
from crm_pipeline.sources.raw_tables import CopyText, SyncBatch, encode_row, write_batch
from crm_pipeline.sources.simulator import hubspot, salesforce
from crm_pipeline.sources.simulator.block import Block, Source, text_form, uuid4_texts
from crm_pipeline.sources.simulator.world import EPOCH, Scale, World
from crm_pipeline.warehouse import audit_log
from crm_pipeline.warehouse.ddl import ddl_transaction, ensure_schema, split_script

FaultKind = Literal[
    "null_primary_key",
    "duplicate_primary_key",
    "malformed_email",
    "negative_amount",
    "unknown_stage",
    "orphan_foreign_key",
    "new_column",
    "dropped_column",
    "retyped_column",
    "naive_timestamps",
    "empty_batch",
]
BAD_ROWS = 5
# A custom property someone added in the portal, its name longer than PostgreSQL allows: the column the destination
# makes of it is cut with a hash suffix (``contract.destination_column_name``).
NEW_PROPERTY = "properties_renewal_likelihood_score_for_enterprise_accounts_in_emea_2026"
NEW_COLUMN = destination_column_name(NEW_PROPERTY)


SOURCES: dict[str, Source] = {"hubspot": hubspot.SOURCE, "salesforce": salesforce.SOURCE}
# (source, stream) -> the entity kind whose index the records carry, for streams that identify people or companies.
IDENTITY_KINDS = {
    ("hubspot", "companies"): "company",
    ("hubspot", "contacts"): "contact",
    ("hubspot", "owners"): "owner",
    ("salesforce", "Account"): "company",
    ("salesforce", "Contact"): "contact",
    ("salesforce", "Lead"): "contact",
    ("salesforce", "User"): "owner",
}
# Per fault kind, the first column of the stream it applies to (in this order of preference).
FAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "malformed_email": ("properties_email", "Email", "email"),
    "negative_amount": ("properties_amount", "Amount"),
    "unknown_stage": ("properties_dealstage", "StageName"),
    "orphan_foreign_key": ("companies", "AccountId", "OpportunityId", "associations_contactIds"),
    "retyped_column": ("archived", "IsDeleted", "active", "IsActive"),
}

FAULTS_VARIABLE = "crm_simulator_faults"


class Fault(BaseModel):
    """Make sync number ``sync`` (1-based; every sync when omitted) of ``stream`` deliver a bad batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    stream: str
    kind: FaultKind
    sync: int | None = None


@dataclass(frozen=True)
class SyncResult:
    stream: str
    sync_id: int
    sync_number: int
    rows: int
    window_start: datetime | None
    window_end: datetime
    extracted_at: datetime
    faults: tuple[str, ...] = field(default=())

    def stored(self) -> dict[str, Any]:
        """Everything, JSON-safe: what ``crm_simulator.run_loads`` keeps of a run's sync."""
        times = {"window_start": self.window_start, "window_end": self.window_end, "extracted_at": self.extracted_at}
        return {
            **{k: v.isoformat() if v is not None else None for k, v in times.items()},
            "stream": self.stream,
            "sync_id": self.sync_id,
            "sync_number": self.sync_number,
            "rows": self.rows,
            "faults": list(self.faults),
        }

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> SyncResult:
        start = data["window_start"]
        return cls(
            data["stream"],
            int(data["sync_id"]),
            int(data["sync_number"]),
            int(data["rows"]),
            datetime.fromisoformat(start) if start else None,
            datetime.fromisoformat(data["window_end"]),
            datetime.fromisoformat(data["extracted_at"]),
            tuple(data["faults"]),
        )

    def summary(self) -> dict[str, Any]:
        """Small and JSON-safe: this is what goes to XCom."""
        return {
            "stream": self.stream,
            "sync_id": self.sync_id,
            "sync_number": self.sync_number,
            "rows": self.rows,
            "window_end": self.window_end.isoformat(),
            "faults": list(self.faults),
            "source": "simulator",
            "started_at": self.extracted_at.isoformat(),
        }


STATE_SCHEMA = "crm_simulator"
STATE_DDL = """
create sequence if not exists crm_simulator.sync_ids;
create table if not exists crm_simulator.sync_state (
    stream text primary key,
    syncs integer not null,
    synced_until timestamptz not null,
    generation_id bigint not null
);
create table if not exists crm_simulator.run_loads (
    stream text not null,
    run_id text not null,
    result jsonb not null,
    primary key (stream, run_id)
);
create table if not exists crm_simulator.identity (
    source text not null,
    stream text not null,
    source_id text not null,
    entity_kind text not null,
    entity_index bigint not null,
    primary key (source, stream, source_id)
)
"""


def fault_column(spec: StreamSpec, kind: str) -> str:
    for column in FAULT_COLUMNS.get(kind, ()):
        if column in spec.columns:
            return column
    raise ValueError(f"fault {kind!r} does not apply to stream {spec.key}: it has none of {FAULT_COLUMNS[kind]}")


def next_window_end(spec: StreamSpec, since: datetime) -> datetime:
    """Where the next sync's window ends: one interval on, or a cron stream's next run after ``since``, so the
    simulated clock moves as the stream's schedule does (an hourly cron brings an hour, not a day)."""
    frequency = parse_frequency(spec.frequency)
    if isinstance(frequency, timedelta):
        return since + frequency
    from croniter import croniter  # Airflow's own dependency; the catalogue has checked the expression

    following: datetime = croniter(frequency, since).get_next(datetime)
    return following


def _corrupt(spec: StreamSpec, record: dict[str, Any], kind: str, n: int) -> None:
    if kind == "null_primary_key":
        record[spec.primary_key[0]] = None
    elif kind == "malformed_email":
        record[fault_column(spec, kind)] = f"not-an-email-{n}"
    elif kind == "negative_amount":
        column = fault_column(spec, kind)
        record[column] = -abs(float(record.get(column) or 1))
    elif kind == "unknown_stage":
        record[fault_column(spec, kind)] = "stage_that_does_not_exist"
    elif kind == "orphan_foreign_key":
        column = fault_column(spec, kind)
        orphan = f"does-not-exist-{n}"
        record[column] = [orphan] if spec.columns[column] == "array" else orphan
    elif kind == "new_column":
        record[NEW_COLUMN] = f"surprise-{n}"


def with_faults(spec: StreamSpec, records: Iterator[dict[str, Any]], kinds: set[str]) -> Iterator[dict[str, Any]]:
    """Pass records through, corrupting the first ``BAD_ROWS`` per the fault kinds; lazily, in bounded memory."""
    if "empty_batch" in kinds:
        return
    row_kinds = kinds - {"duplicate_primary_key", "dropped_column", "naive_timestamps", "retyped_column"}
    retyped = fault_column(spec, "retyped_column") if "retyped_column" in kinds else None
    first: list[dict[str, Any]] = []
    for n, record in enumerate(records):
        if retyped is not None and isinstance(record.get(retyped), bool):
            # the property is a string now: the source sends each value as its text ("true", "false")
            record[retyped] = json.dumps(record[retyped])
        if n < BAD_ROWS:
            for kind in row_kinds:
                _corrupt(spec, record, kind, n)
            first.append(record)
        yield record
    if "duplicate_primary_key" in kinds:
        yield from (dict(r) for r in first)


def sync_catalogue(spec: StreamSpec, kinds: set[str]) -> StreamSpec:
    """The stream as this sync's source describes it: a schema fault is a change in the source's schema (a new
    property, one deleted, one retyped, a cursor sent without its zone), which the destination then applies to the
    table with its own statements (``raw_tables.match_columns``)."""
    columns = dict(spec.columns)
    if "new_column" in kinds:
        columns[NEW_COLUMN] = "string"
    if "dropped_column" in kinds:
        columns.pop(next(c for c in reversed(spec.columns) if c not in (*spec.primary_key, spec.cursor_field)))
    if "retyped_column" in kinds:
        columns[fault_column(spec, "retyped_column")] = "string"
    if "naive_timestamps" in kinds and spec.cursor_field:
        columns[spec.cursor_field] = "timestamp_without_timezone"
    return spec if columns == spec.columns else spec.model_copy(update={"columns": columns})


def _faults_of(faults: tuple[Fault, ...], spec: StreamSpec, number: int) -> set[str]:
    return {f.kind for f in faults if f.stream == spec.key and f.sync in (None, number)}


def _generation(spec: StreamSpec, state: tuple[Any, ...] | None) -> int:
    """The sync's generation, as the platform sets it: a full refresh stream's goes up by one at every job (from
    none, so the first is 1: ``GenerationBumper.kt``); a stream never refreshed has none, which the catalogue it
    sends reads as 0 (``CatalogGenerationSetter.kt``)."""
    bump = 1 if spec.sync_mode == "full_refresh_overwrite" else 0
    return bump if state is None else int(state[-1]) + bump


def _match(conn: psycopg.Connection, spec: StreamSpec, target: StreamSpec, generation: int, cascade: bool) -> None:
    """Match the table's columns to the sync's catalogue, except where the destination does not: an overwrite that
    goes through a temporary table leaves the final table as it is until the swap replaces it."""
    if not raw_tables.overwrites_through_temp(conn, spec, generation):
        raw_tables.match_columns(conn, target, drop_cascade=cascade)


def run_sync(
    conn: psycopg.Connection,
    spec: StreamSpec,
    *,
    seed: int,
    scale: Scale,
    dirt_rate: float = 0.05,
    faults: tuple[Fault, ...] = (),
    sync_id: int | None = None,
    progress: Callable[[int], None] | None = None,
    window: tuple[datetime, datetime] | None = None,
    audit_run_id: str | None = None,
    drop_cascade: bool = False,
    as_airbyte: bool = False,
) -> SyncResult:
    """Run the next sync of ``spec`` against the simulated company and write it to the raw table.

    ``sync_id``: the id to stamp (the Airbyte API double passes its job id, as Airbyte does); by default the next
    value of the simulator's own sequence. ``progress`` is called with row counts as they stream (a progress bar).
    ``window``: a backfill: deliver again the records whose last change lies in ``[start, end)`` of already synced
    history, as the source holds them now, as a batch of its own, without moving the stream's clock (a full-refresh
    stream delivers its whole table, as always).
    ``audit_run_id``: record the load in the audit log under this run, in the load's own transaction (the pipeline's
    syncs do; the Airbyte API double, which plays Airbyte's part, does not).
    ``drop_cascade``: the destination's option of that name (off by default, docs/deploy.md).
    A warehouse marked for Airbyte (``source_mode``) is refused, but to the Airbyte API double (``as_airbyte``),
    which plays Airbyte's part."""
    if not as_airbyte:
        source_mode.refuse_simulated_writes(conn)
    if audit_run_id is not None:
        audit_log.ensure_audit_log(conn)
    with ddl_transaction(conn):
        ensure_schema(conn, STATE_SCHEMA)
        for stmt in split_script(STATE_DDL):
            conn.execute(stmt)
        state = conn.execute(
            "select syncs, generation_id from crm_simulator.sync_state where stream = %s", (spec.key,)
        ).fetchone()
        # The sync's start, as the destination's: the table, then its columns matched to the source's schema.
        raw_tables.create_raw_table(conn, spec)
        kinds = _faults_of(faults, spec, (state[0] if state else 0) + 1)
        _match(conn, spec, sync_catalogue(spec, kinds), _generation(spec, state), drop_cascade)
    with conn.transaction():
        row = conn.execute(
            "select syncs, synced_until, generation_id from crm_simulator.sync_state where stream = %s for update",
            (spec.key,),
        ).fetchone()
        syncs, since, _ = row if row else (0, None, 1)
        if audit_run_id is not None and (done := _loaded_by_run(conn, spec, audit_run_id)) is not None:
            return done  # a retry of a try that committed, then died before it could report: exactly once per run
        until = EPOCH if since is None else next_window_end(spec, since)
        number = syncs + 1
        backfill = window is not None and spec.sync_mode != "full_refresh_overwrite"
        if backfill:
            until = _backfill_end(spec, window, since)  # type: ignore[arg-type]
        if sync_id is None:
            sync_id = conn.execute("select nextval('crm_simulator.sync_ids')").fetchone()[0]  # type: ignore[index]
        extracted_at = datetime.now(UTC)
        world = World(seed, scale)
        window_start = None if spec.sync_mode == "full_refresh_overwrite" else since
        if backfill:
            window_start = window[0]  # type: ignore[index]
        kinds = _faults_of(faults, spec, number)
        target = sync_catalogue(spec, kinds)
        generation = _generation(spec, row)
        _match(conn, spec, target, generation, drop_cascade)  # nothing, unless another sync ran since

        identity_kind = IDENTITY_KINDS.get((spec.source, spec.stream))
        resend = spec.sync_mode == "incremental_append" and since is not None and not backfill
        # A backfill reads the source as it is now (``since``, where the stream's clock stands), as a real API
        # does: the records whose last change lies in the window, in their current state; never a state they had
        # back then, nor a record deleted or merged away since.
        as_of = since if backfill else None
        raw_ids = RawIds(world, spec.key, ("backfill", sync_id) if backfill else (number,))
        batch = SyncBatch(sync_id=sync_id, extracted_at=extracted_at, generation_id=generation)
        truth = Truth(spec, world, identity_kind)
        with truth:
            rows: raw_tables.Rows
            if not kinds and not resend:
                blocks = SOURCES[spec.source].changed_blocks(
                    world, spec.stream, window_start, until, dirt_rate, as_of=as_of
                )
                rows = _block_rows(target, blocks, raw_ids, batch, truth, progress)
            else:
                records = _records(spec, world, window_start, until, dirt_rate, as_of, since if resend else None, truth)
                rows = _record_rows(target, with_faults(spec, records, kinds), kinds, raw_ids, batch, progress)
            written = write_batch(conn, target, rows, generation_id=generation, drop_cascade=drop_cascade)
            truth.store(conn)
        if audit_run_id is not None:
            details = {"sync_id": sync_id, "rows": written, "source": "simulator", "backfill": backfill}
            details["faults"] = sorted(kinds)
            audit_log.record_event(conn, "load", spec.key, run_id=audit_run_id, details=details)
        if not backfill:
            conn.execute(
                "insert into crm_simulator.sync_state as s (stream, syncs, synced_until, generation_id)"
                " values (%s, %s, %s, %s) on conflict (stream) do update"
                " set syncs = excluded.syncs, synced_until = excluded.synced_until,"
                " generation_id = excluded.generation_id",
                (spec.key, number, until, generation),
            )
        result = SyncResult(spec.key, sync_id, number, written, window_start, until, extracted_at, tuple(sorted(kinds)))
        if audit_run_id is not None:
            conn.execute(
                "insert into crm_simulator.run_loads (stream, run_id, result) values (%s, %s, %s)",
                (spec.key, audit_run_id, Jsonb(result.stored())),
            )
    return result


PROGRESS_EVERY = 2000


class RawIds:
    """Airbyte's ``_airbyte_raw_id`` per row: random UUIDs, reproducible per stream and sync."""

    def __init__(self, world: World, stream: str, sync: tuple[object, ...]) -> None:
        self._draws = world.draws
        self._purpose = (stream, "raw_ids", *sync)
        self._issued = 0
        self._spare: list[str] = []

    def take(self, n: int) -> list[str]:
        rows = np.arange(self._issued, self._issued + n, dtype=np.int64)
        self._issued += n
        return uuid4_texts(self._draws.bits(rows, *self._purpose, j=0), self._draws.bits(rows, *self._purpose, j=1))

    def next(self) -> str:
        if not self._spare:
            self._spare = self.take(PROGRESS_EVERY)[::-1]
        return self._spare.pop()


class Truth:
    """The ground truth of who is who (``crm_simulator.identity``), spooled to disk while the batch streams."""

    def __init__(self, spec: StreamSpec, world: World, kind: str | None) -> None:
        self.spec, self.world, self.kind = spec, world, kind
        self._file: Any = None

    def __enter__(self) -> Truth:
        self._file = tempfile.TemporaryFile("w+")
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()

    def add(self, index: np.ndarray, source_ids: list[Any]) -> None:
        if self.kind is None:
            return
        entity = self.world.people(index) if self.kind == "contact" else index
        prefix = f"{self.spec.source}\t{self.spec.stream}\t"
        self._file.write(
            "".join(f"{prefix}{i}\t{self.kind}\t{e}\n" for i, e in zip(source_ids, entity.tolist(), strict=True))
        )

    def store(self, conn: psycopg.Connection) -> None:
        if self.kind is not None:
            _store_identity(conn, self._file, self.spec.source, self.spec.stream)


def _block_rows(
    target: StreamSpec,
    blocks: Iterator[Block],
    raw_ids: RawIds,
    batch: SyncBatch,
    truth: Truth,
    progress: Callable[[int], None] | None,
) -> Iterator[CopyText]:
    """COPY text straight from the generator's blocks: the first sync's path, where speed matters."""
    columns = list(target.columns)
    meta = json.dumps({"sync_id": batch.sync_id, "changes": []})
    shared = [batch.extracted_at.isoformat(), meta, str(batch.generation_id)]
    key = target.primary_key[0]
    for block in blocks:
        n = len(block)
        truth.add(block.index, text_form(block.columns[key]))
        yield CopyText(n, block.copy_text(columns, [raw_ids.take(n), *shared]))
        if progress is not None:
            progress(n)


def _records(
    spec: StreamSpec,
    world: World,
    start: datetime | None,
    until: datetime,
    dirt_rate: float,
    as_of: datetime | None,
    resend_from: datetime | None,
    truth: Truth,
) -> Iterator[dict[str, Any]]:
    """Record by record: the path of faulted batches, and of the inclusive-cursor resend of an append stream."""
    generate = SOURCES[spec.source].changed_records
    key = spec.primary_key[0]
    in_window: set[Any] = set()
    for index, record in generate(world, spec.stream, start, until, dirt_rate, as_of=as_of):
        truth.add(np.array([index], dtype=np.int64), [record[key]])
        if resend_from is not None:
            in_window.add(record[key])
        yield record
    if resend_from is not None:
        # records changed since the previous sync come in the window, in their new state, not twice
        for record in at_last_cursor(spec, world, resend_from, dirt_rate):
            if record[key] not in in_window:
                yield record


def at_last_cursor(spec: StreamSpec, world: World, since: datetime, dirt_rate: float) -> Iterator[dict[str, Any]]:
    """The records an inclusive cursor reads again: Airbyte keeps the highest cursor value it has emitted as the
    stream's state and the next sync asks for ``cursor >= state``, so the records at that value arrive again,
    unchanged (at-least-once delivery: the duplicates append mode keeps).

    The state is the highest cursor among the records as they stood at ``since``. It is looked for in the
    interval before ``since`` first (the previous sync's window, where it almost always is), then in windows four
    times as long, then in the whole history (one scan, only when nothing changed for a long time)."""
    cursor = spec.cursor_field
    assert cursor is not None, f"{spec.key}: an incremental stream has a cursor"  # the catalogue checks it
    lookback: timedelta | None = frequency_interval(spec.frequency)
    while True:
        start = None if lookback is None else since - lookback
        blocks = [
            block
            for block in SOURCES[spec.source].changed_blocks(world, spec.stream, start, since, dirt_rate)
            if len(block)
        ]
        if blocks or lookback is None:
            break
        lookback = lookback * 4 if lookback * 4 < MAX_INTERVAL else None  # then the whole history
    if not blocks:
        return  # nothing was ever emitted: no state yet
    highest = max(np.max(np.asarray(block.columns[cursor])) for block in blocks)
    for block in blocks:
        at_highest = np.asarray(block.columns[cursor]) == highest
        if at_highest.any():
            for _, record in block.where(at_highest).records():
                yield record


def _record_rows(
    target: StreamSpec,
    records: Iterator[dict[str, Any]],
    kinds: set[str],
    raw_ids: RawIds,
    batch: SyncBatch,
    progress: Callable[[int], None] | None,
) -> Iterator[tuple[Any, ...]]:
    naive = "naive_timestamps" in kinds and target.cursor_field
    n = 0
    for n, record in enumerate(records, start=1):
        if progress is not None and n % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
        if naive and isinstance(record.get(target.cursor_field), datetime):  # type: ignore[arg-type]
            record[target.cursor_field] = record[target.cursor_field].replace(tzinfo=None)  # type: ignore[index]
        yield encode_row(target, record, raw_ids.next(), batch)
    if progress is not None:
        progress(n % PROGRESS_EVERY)


def _loaded_by_run(conn: psycopg.Connection, spec: StreamSpec, run_id: str) -> SyncResult | None:
    """The sync this Airflow run already committed for ``spec``, if any. A worker that dies after the commit and
    before the task reports success leaves a try the scheduler fails and retries; the retry must not sync the
    next interval under the same run (the marts would then differ from a run without the fault)."""
    row = conn.execute(
        "select result from crm_simulator.run_loads where stream = %s and run_id = %s", (spec.key, run_id)
    ).fetchone()
    return SyncResult.from_stored(row[0]) if row else None


class BackfillWindowError(ValueError):
    """A backfill window the stream cannot serve; the message names the stream and the param."""


def _backfill_end(spec: StreamSpec, window: tuple[datetime, datetime], synced_until: datetime | None) -> datetime:
    """The end of a backfill window, checked: it must lie within history the stream has already synced."""
    start, end = window
    if synced_until is None:
        raise BackfillWindowError(f"{spec.key}: nothing synced yet, so no history to backfill; run a normal sync first")
    if not start < end:
        raise BackfillWindowError(f"{spec.key}: backfill window_start {start.isoformat()} must be before window_end")
    if end > synced_until:
        raise BackfillWindowError(
            f"{spec.key}: backfill window_end {end.isoformat()} is after the stream's synced history, which ends at"
            f" {synced_until.isoformat()}"
        )
    return end


def _store_identity(conn: psycopg.Connection, truth: Any, source: str, stream: str) -> None:
    """Add the batch's ground truth. A stream's first sync COPYs straight in (its ids are new and unique); later
    syncs deliver ids already known, so they merge through a staging table."""
    truth.seek(0)
    known = conn.execute(
        "select exists (select from crm_simulator.identity where source = %s and stream = %s)", (source, stream)
    ).fetchone()
    target = "_identity" if known and known[0] else "crm_simulator.identity"
    if target == "_identity":
        conn.execute("create temp table _identity (like crm_simulator.identity) on commit drop")
    with conn.cursor() as cur, cur.copy(f"copy {target} from stdin") as copy:
        while chunk := truth.read(1 << 20):
            copy.write(chunk)
    if target == "_identity":
        conn.execute("insert into crm_simulator.identity select * from _identity on conflict do nothing")
        conn.execute("drop table _identity")


def parse_faults(text: str | None, catalogue: Catalogue | None = None) -> tuple[Fault, ...]:
    """Faults from the ``crm_simulator_faults`` Variable: a JSON list of ``{stream, kind, sync?}``, each checked
    against the catalogue: a fault that could never fire (a misspelt stream, ``sync: 0``, a kind the stream has no
    column for) is refused with its position named, rather than a test of the gates silently testing nothing."""
    if not text or not text.strip():
        return ()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{FAULTS_VARIABLE} is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise ValueError(f"{FAULTS_VARIABLE} must be a JSON list of {{stream, kind, sync}}")
    catalogue = catalogue or default_catalogue()
    faults = []
    for position, item in enumerate(data):
        where = f"{FAULTS_VARIABLE}[{position}]"
        try:
            fault = Fault.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            field_name = ".".join(str(part) for part in first["loc"]) or "(entry)"
            raise ValueError(f"{where}: '{field_name}' {first['msg']}") from None
        problem = _fault_problem(fault, catalogue)
        if problem:
            raise ValueError(f"{where}: {problem}")
        faults.append(fault)
    return tuple(faults)


def _fault_problem(fault: Fault, catalogue: Catalogue) -> str | None:
    known = [spec.key for spec in catalogue.streams]
    if fault.stream not in known:
        return f"'stream' {fault.stream!r} is not in the catalogue; known: {', '.join(known)}"
    if fault.sync is not None and fault.sync < 1:
        return f"'sync' counts from 1 (the stream's first sync), got {fault.sync}"
    spec = catalogue.get(fault.stream)
    needs = FAULT_COLUMNS.get(fault.kind, ())
    if needs and not any(column in spec.columns for column in needs):
        return f"'kind' {fault.kind!r} needs one of the columns {', '.join(needs)}; {spec.key} has none"
    cursor_type = spec.columns.get(spec.cursor_field or "", "")
    if fault.kind == "naive_timestamps" and cursor_type != "timestamp_with_timezone":
        return f"'kind' 'naive_timestamps' needs a timestamp cursor; {spec.key}'s is {spec.cursor_field or 'none'}"
    return None
