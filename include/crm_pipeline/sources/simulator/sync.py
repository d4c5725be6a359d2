"""One simulated Airbyte sync of one stream: advance the stream's simulated clock, emit what changed, write it.

Each stream keeps its own clock in ``crm_simulator.sync_state``: the first sync delivers every live record as of
the simulation epoch (the initial historical load), each later sync the window of one catalogue interval.
Sync ids come from one sequence, as Airbyte's job ids do. The state row is updated in the same transaction as
the raw write, so a sync that fails leaves neither rows nor an advanced clock behind.

Faults make one sync deliver a bad batch of a named kind, for the quality-gate tests and demos of a failing gate.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from pydantic import BaseModel, ConfigDict

from crm_pipeline.catalogue import StreamSpec, parse_frequency
from crm_pipeline.sources.raw_tables import SyncBatch, encode_row, write_batch
from crm_pipeline.sources.simulator.hubspot import changed_records
from crm_pipeline.sources.simulator.world import EPOCH, Scale, World, rng_for

FaultKind = Literal[
    "null_primary_key",
    "duplicate_primary_key",
    "malformed_email",
    "negative_amount",
    "unknown_stage",
    "empty_batch",
]
_BAD_ROWS = 5


class Fault(BaseModel):
    """Make sync number ``sync`` (1-based, any sync when omitted) of ``stream`` deliver a bad batch."""

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

    def summary(self) -> dict[str, Any]:
        """Small and JSON-safe: this is what goes to XCom."""
        return {
            "stream": self.stream,
            "sync_id": self.sync_id,
            "sync_number": self.sync_number,
            "rows": self.rows,
            "window_end": self.window_end.isoformat(),
            "faults": list(self.faults),
        }


STATE_DDL = """
create schema if not exists crm_simulator;
create sequence if not exists crm_simulator.sync_ids;
create table if not exists crm_simulator.sync_state (
    stream text primary key,
    syncs integer not null,
    synced_until timestamptz not null,
    generation_id bigint not null
)
"""


def _interval(spec: StreamSpec) -> timedelta:
    frequency = parse_frequency(spec.frequency)
    return frequency if isinstance(frequency, timedelta) else timedelta(days=1)


def _apply_faults(spec: StreamSpec, records: list[dict[str, Any]], faults: list[Fault]) -> list[dict[str, Any]]:
    for fault in faults:
        if fault.kind == "empty_batch":
            records = []
            continue
        targets = records[:_BAD_ROWS]
        if fault.kind == "null_primary_key":
            for r in targets:
                r[spec.primary_key[0]] = None
        elif fault.kind == "duplicate_primary_key":
            records = records + [dict(r) for r in targets]
        elif fault.kind == "malformed_email":
            for i, r in enumerate(targets):
                r["properties_email"] = f"not-an-email-{i}"
        elif fault.kind == "negative_amount":
            for r in targets:
                r["properties_amount"] = -abs(float(r.get("properties_amount") or 1))
        elif fault.kind == "unknown_stage":
            for r in targets:
                r["properties_dealstage"] = "stage_that_does_not_exist"
    return records


def run_sync(
    conn: psycopg.Connection,
    spec: StreamSpec,
    *,
    seed: int,
    scale: Scale,
    dirt_rate: float = 0.05,
    faults: tuple[Fault, ...] = (),
) -> SyncResult:
    """Run the next sync of ``spec`` against the simulated company and write it to the raw table."""
    if spec.source != "hubspot":
        raise NotImplementedError(f"the simulator has no {spec.source} source yet (stream {spec.key})")
    with conn.transaction():
        for stmt in STATE_DDL.split(";"):
            conn.execute(stmt)
        row = conn.execute(
            "select syncs, synced_until, generation_id from crm_simulator.sync_state where stream = %s for update",
            (spec.key,),
        ).fetchone()
        syncs, since, generation = row if row else (0, None, 1)
        until = EPOCH if since is None else since + _interval(spec)
        number = syncs + 1
        sync_id = conn.execute("select nextval('crm_simulator.sync_ids')").fetchone()[0]  # type: ignore[index]
        extracted_at = datetime.now(UTC)
        world = World(seed, scale)
        window_start = None if spec.sync_mode == "full_refresh_overwrite" else since
        records = list(changed_records(world, spec.stream, window_start, until, dirt_rate))
        if spec.sync_mode == "incremental_append" and since is not None:
            # Airbyte's inclusive cursor: records at the previous sync's last cursor value are sent again.
            records += [r for r in changed_records(world, spec.stream, since - timedelta(seconds=1), since, dirt_rate)]
        active = [f for f in faults if f.stream == spec.key and f.sync in (None, number)]
        records = _apply_faults(spec, records, active)
        batch = SyncBatch(sync_id=sync_id, extracted_at=extracted_at, generation_id=generation)
        rng = rng_for(seed, spec.key, "raw_ids", number)

        def rows() -> Iterator[tuple[Any, ...]]:
            for record in records:
                raw_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                yield encode_row(spec, record, raw_id, batch)

        written = write_batch(conn, spec, rows())
        conn.execute(
            "insert into crm_simulator.sync_state as s (stream, syncs, synced_until, generation_id)"
            " values (%s, %s, %s, %s) on conflict (stream) do update"
            " set syncs = excluded.syncs, synced_until = excluded.synced_until",
            (spec.key, number, until, generation),
        )
    return SyncResult(
        spec.key, sync_id, number, written, window_start, until, extracted_at, tuple(f.kind for f in active)
    )


def parse_faults(text: str | None) -> tuple[Fault, ...]:
    """Faults from the ``crm_simulator_faults`` Variable: a JSON list of ``{stream, kind, sync?}``."""
    if not text or not text.strip():
        return ()
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("crm_simulator_faults must be a JSON list of {stream, kind, sync}")
    return tuple(Fault.model_validate(item) for item in data)
