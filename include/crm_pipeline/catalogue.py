"""The stream catalogue: one YAML entry per CRM object, validated once, driving DAGs, assets, gates and docs.

Validation happens here and only here. A bad entry raises :class:`CatalogueError` with one line a person can
act on (``crm_streams.yml: stream 'hubspot.deals': 'cursor_field' must be one of the stream's columns, got
'updated'``), so a DAG file that loads the catalogue either gets every stream or fails to import: never a
half-built DAG.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crm_pipeline.errors import CatalogueError
from crm_pipeline.paths import CATALOGUE_FILE

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_INTERVAL = re.compile(r"^(\d+)\s*(m|h|d)$")
_CRON_FIELD = re.compile(r"^[\d*/,\-]+$")
# Longer than any sensible sync cadence, short enough that the arithmetic on it cannot overflow.
MAX_INTERVAL = timedelta(days=366)

SourceSystem = Literal["hubspot", "salesforce"]
SyncMode = Literal["full_refresh_overwrite", "incremental_append", "incremental_append_deduped"]
Severity = Literal["error", "warn"]
# How a PII column reaches the marts analysts read: ``hash`` is a keyed HMAC (joinable, countable, not reversible
# without the pepper); ``mask`` keeps the first character only (readable shape, nothing to join on).
PiiTreatment = Literal["hash", "mask"]
# Airbyte's data types as its protocol names them; sources/contract.py maps them to the Postgres destination's types.
AirbyteType = Literal[
    "string",
    "integer",
    "number",
    "boolean",
    "date",
    "timestamp_with_timezone",
    "timestamp_without_timezone",
    "object",
    "array",
    "union",  # oneOf/type-list schemas (HubSpot numbers since 6.0.1): the destination writes jsonb
]
Identifier = Annotated[str, Field(pattern=IDENTIFIER.pattern)]


class VolumeRange(BaseModel):
    """Expected rows per sync batch; the raw gate's row-count rule uses it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    min: int = Field(ge=0)
    max: int = Field(gt=0)


class Check(BaseModel):
    """A stream-specific gate rule on top of the rules every stream gets from its keys and volume."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rule: Literal["email_format", "non_negative", "accepted_values", "not_null", "foreign_key"]
    column: Identifier
    severity: Severity = "error"
    values: tuple[str, ...] = ()
    # foreign_key: the column it must resolve to, as ``source.stream.column`` (e.g. ``salesforce.Account.Id``), or
    # a field of the objects in an array column, as ``source.stream.column[].field`` (a pipeline's stage ids)
    references: str | None = Field(
        default=None, pattern=r"^(hubspot|salesforce)\.[A-Za-z_]\w*\.[A-Za-z_]\w*(\[\]\.[A-Za-z_]\w*)?$"
    )

    def reference(self) -> tuple[str, str, str, str | None]:
        """``references`` as (source, stream, column, field of its array's objects or None)."""
        path, _, field = (self.references or "").partition("[].")
        source, stream, column = path.split(".")
        return source, stream, column, field or None


class AirbyteConnectionRef(BaseModel):
    """Where the Airbyte connection id lives: an Airflow Variable, never a literal in this file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    variable: Identifier


class StreamSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: SourceSystem
    stream: Identifier
    airbyte_connection: AirbyteConnectionRef
    sync_mode: SyncMode
    primary_key: tuple[Identifier, ...] = Field(min_length=1)
    cursor_field: Identifier | None = None
    frequency: str
    owner: str = Field(min_length=1)
    # column -> its treatment in every analyst-facing mart (dbt's pii macro, meta, the mart audit, the CI check)
    pii_columns: dict[Identifier, PiiTreatment] = Field(default_factory=dict)
    expected_rows_per_sync: VolumeRange
    expected_daily_rows: int = Field(ge=0)
    enabled: bool = True
    description: str = ""
    columns: dict[Identifier, AirbyteType] = Field(min_length=1)
    checks: tuple[Check, ...] = ()
    # Row-level rules quarantine failing rows and let the rest through; a batch with a larger failing share than
    # this is stopped whole (something upstream is broken, not a few records). Up to quarantine_floor failing rows
    # never stop a batch, so one bad record in a small hourly batch is quarantined, not the batch.
    max_quarantine_share: float = Field(default=0.05, ge=0, le=1)
    quarantine_floor: int = Field(default=10, ge=0)

    @field_validator("frequency")
    @classmethod
    def _frequency_is_cron_or_interval(cls, value: str) -> str:
        parse_frequency(value)
        return value

    @property
    def key(self) -> str:
        return f"{self.source}.{self.stream}"

    @property
    def raw_schema(self) -> str:
        return f"raw_{self.source}"

    @property
    def asset_uri(self) -> str:
        return f"airbyte://{self.source}/{self.stream}"

    @property
    def interval(self) -> timedelta:
        """How often the stream syncs: the interval itself, or for a cron expression the widest gap between two
        of its runs in a week (what freshness is judged against)."""
        return frequency_interval(self.frequency)

    @property
    def cadence(self) -> str:
        """The name of the stream's frequency, which names its extract DAG: ``hourly``, ``every_6h``, ``daily``."""
        return frequency_label(self.frequency)


def parse_frequency(value: str) -> str | timedelta:
    """A five-field cron expression (kept as text for Airflow) or an interval like ``30m``, ``6h``, ``1d``.

    Both are checked all the way here, so a value that would only fail later (croniter when the DAG is built, a
    timedelta overflow) is refused by the catalogue with the stream and field named: ``61 * * * *``, ``*/0 * * * *``,
    ``0 0 30 2 *`` (a day that never comes), ``400d``.
    """
    text = value.strip()
    match = _INTERVAL.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        if amount <= 0:
            raise ValueError(f"interval must be positive, got {value!r}")
        minutes = amount * {"m": 1, "h": 60, "d": 24 * 60}[unit]
        if minutes > MAX_INTERVAL // timedelta(minutes=1):  # checked before timedelta() can overflow
            raise ValueError(f"interval must be at most {MAX_INTERVAL.days} days, got {value!r}")
        return timedelta(minutes=minutes)
    fields = text.split()
    if len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields):
        cron = " ".join(fields)
        _cron_widest_gap(cron)  # raises ValueError for a cron expression that croniter refuses or that never fires
        return cron
    raise ValueError(f"must be a 5-field cron expression or an interval like '6h', got {value!r}")


def _cron_widest_gap(cron: str) -> timedelta:
    """The widest gap between two runs of a cron expression in a week of runs (what freshness is judged against),
    refusing one that croniter cannot read or that runs less than once in ``MAX_INTERVAL``."""
    from croniter import CroniterError, croniter  # Airflow's own dependency; only needed for cron frequencies

    try:
        fires = croniter(cron, datetime(2026, 1, 5, tzinfo=UTC))  # from a Monday
        first = previous = fires.get_next(datetime)
        widest = timedelta(0)
        while previous <= first + timedelta(weeks=1):
            current = fires.get_next(datetime)
            widest, previous = max(widest, current - previous), current
            if previous > first + MAX_INTERVAL:
                raise ValueError(f"cron expression {cron!r} runs less often than every {MAX_INTERVAL.days} days")
    except CroniterError as exc:  # croniter's errors are ValueErrors, but say which value and why in one line
        raise ValueError(f"not a cron expression croniter accepts: {cron!r} ({exc})") from None
    return widest


def frequency_interval(value: str) -> timedelta:
    frequency = parse_frequency(value)
    if isinstance(frequency, timedelta):
        return frequency
    return _cron_widest_gap(frequency)


# Lossless spelling of a cron field's punctuation in a DAG id: ``1-5`` and ``1,5`` must not share an extract DAG.
_CRON_WORDS = {"*": "x", "-": "to", ",": "and", "/": "by"}


def frequency_label(value: str) -> str:
    """A frequency as a name fit for a DAG id: ``1h`` → ``hourly``, ``6h`` → ``every_6h``, ``1d`` → ``daily``,
    ``30m`` → ``every_30m``, a cron expression ``0 6 * * 1-5`` → ``cron_0_6_x_x_1to5``.

    The label is a function of the parsed frequency, so ``48h`` and ``2d`` (one schedule) get one DAG, and two
    different schedules never get one: the streams of a DAG run on its first stream's schedule.
    """
    frequency = parse_frequency(value)
    if isinstance(frequency, str):
        fields = ("".join(_CRON_WORDS.get(char, char) for char in field) for field in frequency.split())
        return "cron_" + "_".join(fields)
    names = {timedelta(hours=1): "hourly", timedelta(days=1): "daily", timedelta(weeks=1): "weekly"}
    if frequency in names:
        return names[frequency]
    minutes = int(frequency.total_seconds()) // 60
    if minutes % (24 * 60) == 0:
        return f"every_{minutes // (24 * 60)}d"
    if minutes % 60 == 0:
        return f"every_{minutes // 60}h"
    return f"every_{minutes}m"


def _cross_field_problems(spec: StreamSpec) -> Iterator[str]:
    columns = spec.columns
    for pk in spec.primary_key:
        if pk not in columns:
            yield f"'primary_key' must name the stream's columns, got {pk!r}"
    if spec.sync_mode != "full_refresh_overwrite" and spec.cursor_field is None:
        yield f"'cursor_field' is required for sync_mode {spec.sync_mode!r}"
    if spec.cursor_field is not None and spec.cursor_field not in columns:
        yield f"'cursor_field' must be one of the stream's columns, got {spec.cursor_field!r}"
    for pii in spec.pii_columns:
        if pii not in columns:
            yield f"'pii_columns' must name the stream's columns, got {pii!r}"
    for check in spec.checks:
        if check.column not in columns:
            yield f"'checks' rule {check.rule!r} names an unknown column {check.column!r}"
        if check.rule == "accepted_values" and not check.values:
            yield f"'checks' rule 'accepted_values' on {check.column!r} needs 'values'"
        if (check.rule == "foreign_key") != (check.references is not None):
            yield f"'checks' rule {check.rule!r} on {check.column!r}: 'references' goes with foreign_key, and only"
    if spec.expected_rows_per_sync.min > spec.expected_rows_per_sync.max:
        yield "'expected_rows_per_sync' min must not exceed max"


def _describe(error: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in error["loc"]) or "(entry)"
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "is not a known field"
    elif error["type"] == "literal_error":
        message = f"{message}, got {error.get('input')!r}"
    return f"'{loc}' {message}"


class Catalogue(BaseModel):
    """All streams, in file order; lookups by ``source.stream`` key."""

    model_config = ConfigDict(frozen=True)
    path: Path
    streams: tuple[StreamSpec, ...]

    def enabled(self) -> tuple[StreamSpec, ...]:
        return tuple(s for s in self.streams if s.enabled)

    def get(self, key: str) -> StreamSpec:
        for spec in self.streams:
            if spec.key == key:
                return spec
        raise CatalogueError(f"{self.path.name}: no stream {key!r}; known: {', '.join(s.key for s in self.streams)}")

    def by_source(self, source: str) -> tuple[StreamSpec, ...]:
        return tuple(s for s in self.enabled() if s.source == source)

    def by_cadence(self) -> dict[str, tuple[StreamSpec, ...]]:
        """Enabled streams grouped by frequency (one extract DAG each), in catalogue order."""
        groups: dict[str, list[StreamSpec]] = {}
        for spec in self.enabled():
            groups.setdefault(spec.cadence, []).append(spec)
        return {cadence: tuple(specs) for cadence, specs in groups.items()}


class _UniqueKeys:
    """Refuse a key a mapping already has. PyYAML's stock loaders keep the last one silently, so a second
    ``streams:`` block, or a stream with ``frequency`` twice, would drop what came first unseen."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[attr-defined]
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc, no-any-return]


class _UniqueKeyLoader(_UniqueKeys, yaml.SafeLoader):
    """PyYAML's pure-Python safe loader: its messages name the problem where it is (an unclosed bracket at the
    bracket, not at the end of the file), so a file that fails is read again with it for the message."""


class _FastUniqueKeyLoader(_UniqueKeys, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The same on libyaml's parser: every task process parses its DAG file, which loads the catalogue, and the
    pure-Python parser was a sixth of that parse (docs/performance.md)."""


def _parse(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_FastUniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - raises again, with the clearer message


def _one_line(error: yaml.YAMLError) -> str:
    """PyYAML's message spans lines (problem, then a quoted excerpt); keep the problem and its line and column."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"{error.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(error).split())


def load_catalogue(path: Path = CATALOGUE_FILE) -> Catalogue:
    """Read and validate the whole catalogue; raise one :class:`CatalogueError` on the first bad entry."""
    name = path.name
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise CatalogueError(f"{path}: catalogue file not found") from None
    except OSError as exc:
        raise CatalogueError(f"{path}: catalogue file cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CatalogueError(f"{name}: not UTF-8 text (byte {exc.start} cannot be decoded)") from None
    try:
        document = _parse(text)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{name}: not valid YAML: {_one_line(exc)}") from None
    if not isinstance(document, dict) or not isinstance(document.get("streams"), list):
        raise CatalogueError(f"{name}: top level must be a mapping with a 'streams' list")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise CatalogueError(f"{name}: 'defaults' must be a mapping")

    specs: list[StreamSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(document["streams"]):
        if not isinstance(entry, dict):
            raise CatalogueError(f"{name}: streams[{index}] must be a mapping")
        label = f"{entry.get('source', '?')}.{entry.get('stream', f'#{index}')}"
        try:
            spec = StreamSpec.model_validate({**defaults, **entry})
        except ValidationError as exc:
            raise CatalogueError(f"{name}: stream {label!r}: {_describe(exc.errors()[0])}") from None
        problems = list(_cross_field_problems(spec))
        if problems:
            raise CatalogueError(f"{name}: stream {label!r}: {problems[0]}")
        if spec.key in seen:
            raise CatalogueError(f"{name}: stream {label!r}: declared twice")
        seen.add(spec.key)
        specs.append(spec)
    by_key = {spec.key: spec for spec in specs}
    cadence_of_connection: dict[str, StreamSpec] = {}
    for spec in specs:
        # One Airbyte job syncs every stream of its connection, so a connection has one cadence.
        first = cadence_of_connection.setdefault(spec.airbyte_connection.variable, spec)
        if parse_frequency(first.frequency) != parse_frequency(spec.frequency):
            raise CatalogueError(
                f"{name}: stream {spec.key!r}: 'frequency' {spec.frequency!r} differs from {first.frequency!r} of"
                f" {first.key!r}, which shares its airbyte_connection {spec.airbyte_connection.variable!r}: one"
                " Airbyte job syncs all of a connection's streams, so give each cadence its own connection"
            )
    for spec in specs:
        for check in spec.checks:
            if check.references is None:
                continue
            source, stream, parent_column, field = check.reference()
            parent = by_key.get(f"{source}.{stream}")
            if parent is None or parent_column not in parent.columns:
                raise CatalogueError(
                    f"{name}: stream {spec.key!r}: 'checks' foreign_key on {check.column!r} references"
                    f" {check.references!r}, which is not a stream column in this catalogue"
                )
            if field is not None and parent.columns[parent_column] != "array":
                raise CatalogueError(
                    f"{name}: stream {spec.key!r}: 'checks' foreign_key on {check.column!r} references"
                    f" {check.references!r}, but {parent.key}.{parent_column} is not an array"
                )
    return Catalogue(path=path, streams=tuple(specs))


@cache
def default_catalogue() -> Catalogue:
    """The project's catalogue, parsed once per process (DAG files share it)."""
    return load_catalogue(CATALOGUE_FILE)
