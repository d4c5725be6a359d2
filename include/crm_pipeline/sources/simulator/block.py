"""A block of simulated records, column by column, and its two outputs: COPY text and record dicts.

The generators render records a block at a time as arrays, one per column, typed by numpy dtype:

* ``object`` (or a plain list): text or None; JSON text for the columns named in ``json``;
* ``bool``; ``float64`` (NaN is null); ``int64`` (``INT_NULL`` is null);
* ``datetime64[ms]``: a timestamp with time zone, UTC; ``datetime64[D]``: a date (NaT is null).

A sync turns each block straight into PostgreSQL's COPY text format, a column at a time, without a dict, a tuple
or psycopg's encoding per row: that is what lets the simulator load at a rate comparable to a bare COPY. Tests,
faulted batches and resends use ``records``: the same values as Python objects, as the destination reads them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from itertools import repeat
from typing import Any

import numpy as np

from crm_pipeline.sources.simulator.draws import Ints
from crm_pipeline.sources.simulator.world import World, to_ms

INT_NULL = np.iinfo(np.int64).min
# Rows per block: large enough that numpy's per-call cost vanishes, small enough that PostgreSQL parses one block
# while the next renders (the last block's parsing is not overlapped).
BLOCK_SIZE = 10_000
COPY_NULL = "\\N"


Column = np.ndarray | list[Any]  # a list holds text or None, as an object array does


@dataclass(frozen=True)
class Block:
    index: Ints  # the entity behind each row
    columns: dict[str, Column]
    json: frozenset[str] = field(default=frozenset())
    # Text forms already computed while rendering (``text_form``), by the identity of their column's array.
    memo: dict[int, list[str | None]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.index)

    def where(self, keep: np.ndarray) -> Block:
        """The rows where ``keep`` (a boolean array) is true, as a block of their own."""
        rows = np.flatnonzero(keep).tolist()
        columns = {
            name: column[keep] if isinstance(column, np.ndarray) else [column[row] for row in rows]
            for name, column in self.columns.items()
        }
        return Block(self.index[keep], columns, self.json)

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(entity index, record)`` per row, values as Python objects."""
        names = list(self.columns)
        values = [_python_values(self.columns[name], name in self.json) for name in names]
        for index, row in zip(self.index.tolist(), zip(*values, strict=True), strict=True):
            yield index, dict(zip(names, row, strict=True))

    def copy_text(self, columns: list[str], leading: Sequence[str | list[str]] = ()) -> str:
        """The rows as COPY text (tab-separated, ``\\N`` for null) in the order of ``columns``, after the
        ``leading`` columns (Airbyte's own: a text per row, or one text for every row). A column the block lacks is
        null."""
        n = len(self)
        parts: list[Any] = [repeat(value, n) if isinstance(value, str) else value for value in leading]
        for name in columns:
            column = self.columns.get(name)
            if column is None:
                parts.append(repeat(COPY_NULL, n))
                continue
            text = text_form(column, self.memo)
            parts.append([COPY_NULL if v is None else v for v in text] if None in text else text)
        return "\n".join(map("\t".join, zip(*parts, strict=True))) + "\n" if n else ""


@dataclass(frozen=True)
class Window:
    """What a sync asks a source for: the records whose last change lies in ``(start, end]``, read as the source
    holds them at ``now`` (ms). ``now`` is later than ``end`` for a backfill: a source read again now, as a real
    API only can, for what last changed in an earlier window."""

    now: int
    end: int
    start: int | None

    @classmethod
    def of(cls, since: datetime | None, until: datetime, as_of: datetime | None) -> Window:
        return cls(to_ms(as_of or until), to_ms(until), to_ms(since) if since is not None else None)

    @property
    def everything(self) -> bool:
        """A whole first sync: every record the source holds, so no last change needs computing."""
        return self.start is None and self.now == self.end

    def holds(self, last_change: Ints) -> np.ndarray:
        keep = last_change <= self.end
        return keep & (last_change > self.start) if self.start is not None else keep


BlockFunction = Callable[[World, str, Window, float], Iterator[Block]]


class Source:
    """One CRM's streams, rendered a block at a time by ``blocks``: as blocks (a sync's COPY), or as records."""

    def __init__(self, blocks: BlockFunction) -> None:
        self.blocks = blocks

    def changed_blocks(
        self,
        world: World,
        stream: str,
        since: datetime | None,
        until: datetime,
        dirt_rate: float,
        *,
        as_of: datetime | None = None,
    ) -> Iterator[Block]:
        """The records of ``stream`` whose last change is in ``(since, until]`` (all of them when ``since`` is
        None), as the source holds them at ``as_of`` (default ``until``), in id order."""
        return self.blocks(world, stream, Window.of(since, until, as_of), dirt_rate)

    def changed_records(
        self,
        world: World,
        stream: str,
        since: datetime | None,
        until: datetime,
        dirt_rate: float,
        *,
        as_of: datetime | None = None,
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        """``changed_blocks`` as ``(entity index, record)`` pairs, values as Python objects."""
        for block in self.changed_blocks(world, stream, since, until, dirt_rate, as_of=as_of):
            yield from block.records()


def _python_values(column: Column, is_json: bool) -> list[Any]:
    if isinstance(column, list):
        return [None if v is None else json.loads(v) for v in column] if is_json else column
    kind = column.dtype.kind
    if kind == "O":
        return [None if v is None else json.loads(v) for v in column] if is_json else column.tolist()
    if kind == "M":
        if np.datetime_data(column.dtype)[0] == "D":
            return column.tolist()  # dates, None for NaT
        return [None if v is None else v.replace(tzinfo=UTC) for v in column.astype("datetime64[us]").tolist()]
    if kind == "f":
        return [None if v != v else v for v in column.tolist()]
    if kind == "i":
        return [None if v == INT_NULL else v for v in column.tolist()]
    return column.tolist()


def text_form(column: Column, memo: dict[int, list[str | None]] | None = None) -> list[str | None]:
    """A column as PostgreSQL's text input reads it, None for null: booleans ``t``/``f``, timestamps in ISO 8601
    (UTC, milliseconds), numbers in Python's shortest round-trip form. ``memo`` keeps what was computed by the
    column array's identity: a block that uses one array twice renders it once."""
    if isinstance(column, list):
        return column
    if memo is not None and id(column) in memo:
        return memo[id(column)]
    kind = column.dtype.kind
    text: list[str | None]
    if kind == "O":
        text = column.tolist()
    elif kind == "b":
        text = np.where(column, "t", "f").tolist()
    elif kind == "M":
        text = timestamp_texts(column) if np.datetime_data(column.dtype)[0] == "ms" else date_texts(column)
    elif kind == "f":
        text = [None if v != v else repr(v) for v in column.tolist()]
    elif column.min(initial=0) == INT_NULL:
        text = [None if v == INT_NULL else str(v) for v in column.tolist()]
    else:
        text = list(map(str, column.tolist()))
    if memo is not None:
        memo[id(column)] = text
    return text


def timestamp_texts(column: np.ndarray) -> list[str | None]:
    """ISO 8601 in UTC with milliseconds (``2025-03-04T05:06:07.123Z``), None for NaT. numpy's
    ``datetime_as_string`` costs a microsecond a value; this looks the day, the second and the millisecond up in
    tables and joins them."""
    missing = np.isnat(column)
    if missing.all():
        return [None] * len(column)
    ms_values = column.astype(np.int64)
    day = ms_values // _DAY_MS
    day = np.where(missing, day[~missing][0], day)
    first = int(day.min())
    of_day = ms_values - day * _DAY_MS
    of_day[missing] = 0
    day_part = _day_table(first, int(day.max()), "T")[day - first]
    text = (day_part + _clock()[of_day // 1000] + _millis()[of_day % 1000]).tolist()
    for position in np.flatnonzero(missing).tolist():
        text[position] = None
    return text


def date_texts(column: np.ndarray) -> list[str | None]:
    """Dates as ``2025-03-04``, None for NaT, by a table of the block's days."""
    days = column.astype("datetime64[D]")
    missing = np.isnat(days)
    if missing.all():
        return [None] * len(column)
    number = days.astype(np.int64)
    number = np.where(missing, number[~missing][0], number)
    first = int(number.min())
    text = _day_table(first, int(number.max()), "")[number - first].tolist()
    for position in np.flatnonzero(missing).tolist():
        text[position] = None
    return text


_DAY_MS = 86_400_000
_UNIX_DAY_ZERO = date(1970, 1, 1).toordinal()


def _day_table(first: int, last: int, suffix: str) -> np.ndarray:
    """``YYYY-MM-DD`` + ``suffix`` for the days ``first..last`` since 1970 (numpy's ``datetime_as_string`` costs
    tens of microseconds a call)."""
    return np.array(
        [date.fromordinal(_UNIX_DAY_ZERO + d).isoformat() + suffix for d in range(first, last + 1)], dtype=object
    )


@lru_cache(maxsize=1)
def _clock() -> np.ndarray:
    """``HH:MM:SS.`` for every second of a day."""
    pairs = [f"{n:02d}" for n in range(60)]
    return np.array([f"{h}:{m}:{s}." for h in pairs[:24] for m in pairs for s in pairs], dtype=object)


@lru_cache(maxsize=1)
def _millis() -> np.ndarray:
    return np.array([f"{m:03d}Z" for m in range(1000)], dtype=object)


def ms(values: Ints) -> np.ndarray:
    """POSIX milliseconds as a timestamp column."""
    return values.astype("datetime64[ms]")


def days(values: Ints) -> np.ndarray:
    """POSIX milliseconds as a date column (UTC)."""
    return values.astype("datetime64[ms]").astype("datetime64[D]")


def uuid4_texts(bits_high: np.ndarray, bits_low: np.ndarray) -> list[str]:
    """Version-4 UUIDs in their text form from 128 random bits per row, without a Python object per step."""
    high = (bits_high & np.uint64(0xFFFFFFFFFFFF0FFF)) | np.uint64(0x4000)
    low = (bits_low & np.uint64(0x3FFFFFFFFFFFFFFF)) | np.uint64(0x8000000000000000)
    raw = np.stack([high, low], axis=1).astype(">u8").view(np.uint8).reshape(-1, 16)
    digits = _HEX[raw].reshape(-1, 32)  # two ASCII hex digits per byte
    text = np.full((len(raw), 36), ord("-"), dtype=np.uint8)
    for start, stop, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        text[:, at : at + stop - start] = digits[:, start:stop]
    return text.view("S36")[:, 0].astype("U36").tolist()


_HEX = np.frombuffer(b"".join(f"{b:02x}".encode() for b in range(256)), dtype=np.uint8).reshape(256, 2)
