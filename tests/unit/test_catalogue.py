"""The catalogue loads, and every kind of bad entry fails with one message naming file, stream and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hostile_names import HOSTILE

from crm_pipeline.catalogue import CATALOGUE_FILE, frequency_label, load_catalogue, parse_frequency
from crm_pipeline.errors import CatalogueError


def _stream(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "source": "hubspot",
        "stream": "deals",
        "airbyte_connection": {"variable": "airbyte_connection_hubspot"},
        "sync_mode": "incremental_append_deduped",
        "primary_key": ["id"],
        "cursor_field": "updatedAt",
        "frequency": "1h",
        "owner": "sales-ops",
        "expected_rows_per_sync": {"min": 1, "max": 10},
        "expected_daily_rows": 100,
        "columns": {"id": "string", "updatedAt": "timestamp_with_timezone", "properties_email": "string"},
    }
    entry.update(overrides)
    return entry


def _write(tmp_path: Path, *streams: dict[str, Any]) -> Path:
    path = tmp_path / "crm_streams.yml"
    path.write_text(yaml.safe_dump({"streams": list(streams)}))
    return path


def test_project_catalogue_loads_and_derives_names() -> None:
    catalogue = load_catalogue(CATALOGUE_FILE)
    deals = catalogue.get("hubspot.deals")
    assert deals.raw_schema == "raw_hubspot"
    assert deals.asset_uri == "airbyte://hubspot/deals"
    assert {s.key for s in catalogue.enabled()} >= {"hubspot.contacts", "hubspot.companies", "hubspot.deals"}
    for spec in catalogue.streams:  # PII and keys always name real columns
        assert set(spec.pii_columns) <= set(spec.columns)
        assert set(spec.primary_key) <= set(spec.columns)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cursor_field": "updated"}, "'cursor_field' must be one of the stream's columns, got 'updated'"),
        ({"cursor_field": None}, "'cursor_field' is required for sync_mode 'incremental_append_deduped'"),
        ({"primary_key": ["deal_id"]}, "'primary_key' must name the stream's columns, got 'deal_id'"),
        ({"pii_columns": {"email": "hash"}}, "'pii_columns' must name the stream's columns, got 'email'"),
        ({"sync_mode": "mirror"}, "'sync_mode' Input should be"),
        ({"frequency": "every hour"}, "'frequency' Value error, must be a 5-field cron expression"),
        ({"frequency": "61 * * * *"}, "'frequency' Value error, not a cron expression croniter accepts"),
        ({"frequency": "*/0 * * * *"}, "'frequency' Value error, not a cron expression croniter accepts"),
        ({"frequency": "0 0 30 2 *"}, "'frequency' Value error, not a cron expression croniter accepts"),
        ({"frequency": "0 0 29 2 *"}, "'frequency' Value error, cron expression '0 0 29 2 *' runs less often"),
        ({"frequency": "9999999999d"}, "'frequency' Value error, interval must be at most 366 days"),
        ({"frequency": "0h"}, "'frequency' Value error, interval must be positive"),
        ({"colour": "blue"}, "'colour' is not a known field"),
        (
            {"expected_rows_per_sync": {"min": 5, "max": 1}},
            "'expected_rows_per_sync' min must not exceed max",
        ),
        ({"stream": "deals; drop table x"}, "'stream' String should match pattern"),
        ({"columns": {"id": "string", "updatedAt": "varchar"}}, "'columns.updatedAt' Input should be"),
        (
            {"checks": [{"rule": "email_format", "column": "nope"}]},
            "'checks' rule 'email_format' names an unknown",
        ),
        (
            {"checks": [{"rule": "foreign_key", "column": "id"}]},
            "'checks' rule 'foreign_key' on 'id': 'references' goes with foreign_key",
        ),
        (
            {"checks": [{"rule": "foreign_key", "column": "id", "references": "hubspot.companies.id"}]},
            "'checks' foreign_key on 'id' references 'hubspot.companies.id', which is not a stream column",
        ),
        (
            {"checks": [{"rule": "foreign_key", "column": "id", "references": "hubspot.deals.id[].stageId"}]},
            "references 'hubspot.deals.id[].stageId', but hubspot.deals.id is not an array",
        ),
        (
            {"checks": [{"rule": "foreign_key", "column": "id", "references": "companies; drop"}]},
            "'checks.0.references' String should match pattern",
        ),
        ({"max_quarantine_share": 1.5}, "'max_quarantine_share' Input should be less than or equal to 1"),
    ],
)
def test_bad_entry_names_file_stream_and_field(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    path = _write(tmp_path, _stream(**overrides))
    with pytest.raises(CatalogueError) as excinfo:
        load_catalogue(path)
    text = str(excinfo.value)
    assert text.startswith("crm_streams.yml: stream 'hubspot.")
    assert message in text
    assert "\n" not in text


# Every field that becomes (part of) an SQL identifier or an Airflow Variable name.
IDENTIFIER_FIELDS = {
    "stream": lambda name: {"stream": name},
    "columns": lambda name: {"columns": {"id": "string", "updatedAt": "timestamp_with_timezone", name: "string"}},
    "primary_key": lambda name: {"primary_key": [name]},
    "cursor_field": lambda name: {"cursor_field": name},
    "pii_columns": lambda name: {"pii_columns": {name: "hash"}},
    "checks": lambda name: {"checks": [{"rule": "not_null", "column": name}]},
    "airbyte_connection": lambda name: {"airbyte_connection": {"variable": name}},
}


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
@pytest.mark.parametrize("field", IDENTIFIER_FIELDS)
def test_a_hostile_name_is_refused_in_every_identifier_field(tmp_path: Path, field: str, name: str) -> None:
    path = tmp_path / "crm_streams.yml"
    path.write_text(yaml.safe_dump({"streams": [_stream(**IDENTIFIER_FIELDS[field](name))]}, allow_unicode=True))
    with pytest.raises(CatalogueError) as refused:
        load_catalogue(path)
    message = str(refused.value)
    assert message.startswith("crm_streams.yml: stream ") and "hubspot." in message.split(":")[1]
    assert f"'{field}" in message, message


def test_duplicate_stream_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match=r"'hubspot\.deals': declared twice"):
        load_catalogue(_write(tmp_path, _stream(), _stream()))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"streams: [unclosed", r"^crm_streams\.yml: not valid YAML: expected ',' or ']'.* \(line 1, column 19\)$"),
        (b"streams: []\nstreams: []\n", r"^crm_streams\.yml: not valid YAML: duplicate key 'streams' \(line 2,"),
        (
            b"streams:\n  - source: hubspot\n    frequency: 1h\n    frequency: 1d\n",
            r"^crm_streams\.yml: not valid YAML: duplicate key 'frequency' \(line 4, column 5\)$",
        ),
        (b"streams: [caf\xe9]\n", r"^crm_streams\.yml: not UTF-8 text \(byte 13 cannot be decoded\)$"),
        (b"", r"^crm_streams\.yml: top level must be a mapping with a 'streams' list$"),
        (b"- a list\n", r"^crm_streams\.yml: top level must be a mapping with a 'streams' list$"),
    ],
    ids=["yaml-syntax", "duplicate-top-key", "duplicate-field", "not-utf8", "empty", "a-list"],
)
def test_an_unreadable_file_is_named_in_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    """PyYAML keeps the last of two equal keys silently: a second ``streams:`` would drop every stream above it."""
    path = tmp_path / "crm_streams.yml"
    path.write_bytes(content)
    with pytest.raises(CatalogueError, match=message) as refused:
        load_catalogue(path)
    assert "\n" not in str(refused.value)


def test_a_missing_or_unreadable_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match=r"missing\.yml: catalogue file not found"):
        load_catalogue(tmp_path / "missing.yml")
    (tmp_path / "folder.yml").mkdir()
    with pytest.raises(CatalogueError, match=r"folder\.yml: catalogue file cannot be read: Is a directory"):
        load_catalogue(tmp_path / "folder.yml")


def test_full_refresh_needs_no_cursor(tmp_path: Path) -> None:
    spec = load_catalogue(_write(tmp_path, _stream(sync_mode="full_refresh_overwrite", cursor_field=None))).streams[0]
    assert spec.cursor_field is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("6h", "6:00:00"), ("30m", "0:30:00"), ("1d", "1 day, 0:00:00"), ("0 */6 * * *", "0 */6 * * *")],
)
def test_frequency_accepts_intervals_and_cron(text: str, expected: str) -> None:
    assert str(parse_frequency(text)) == expected


def test_missing_required_field_is_named(tmp_path: Path) -> None:
    entry = _stream()
    entry.pop("expected_daily_rows")
    with pytest.raises(CatalogueError, match=r"stream 'hubspot\.deals': 'expected_daily_rows' Field required"):
        load_catalogue(_write(tmp_path, entry))


@pytest.mark.parametrize(
    ("frequency", "label"),
    [
        ("1h", "hourly"),
        ("6h", "every_6h"),
        ("1d", "daily"),
        ("30m", "every_30m"),
        ("48h", "every_2d"),
        ("120m", "every_2h"),
        ("0 6 * * 1-5", "cron_0_6_x_x_1to5"),
        ("0 6 * * 1,5", "cron_0_6_x_x_1and5"),
        ("*/15 * * * *", "cron_xby15_x_x_x_x"),
    ],
)
def test_a_frequency_names_its_extract_dag(frequency: str, label: str) -> None:
    assert frequency_label(frequency) == label


def test_streams_are_grouped_by_cadence_in_catalogue_order(tmp_path: Path) -> None:
    catalogue = load_catalogue(
        _write(
            tmp_path,
            _stream(stream="deals"),
            _stream(stream="companies", frequency="1d", airbyte_connection={"variable": "hubspot_daily"}),
            _stream(stream="engagements"),
            _stream(stream="owners", frequency="1d", airbyte_connection={"variable": "hubspot_daily"}, enabled=False),
        )
    )
    groups = {cadence: [s.stream for s in specs] for cadence, specs in catalogue.by_cadence().items()}
    assert groups == {"hourly": ["deals", "engagements"], "daily": ["companies"]}, "disabled streams are left out"


def test_one_schedule_is_one_extract_dag_and_two_schedules_are_two(tmp_path: Path) -> None:
    """A DAG runs on its first stream's schedule, so grouping is by the parsed frequency: ``48h`` and ``2d`` are
    one DAG (one Airbyte job for their connection), and two cron expressions that differ only in punctuation are not."""
    catalogue = load_catalogue(
        _write(
            tmp_path,
            _stream(stream="deals", frequency="48h"),
            _stream(stream="companies", frequency="2d"),
            _stream(stream="owners", frequency="0 6 * * 1-5", airbyte_connection={"variable": "weekdays"}),
            _stream(stream="contacts", frequency="0 6 * * 1,5", airbyte_connection={"variable": "mon_fri"}),
        )
    )
    groups = {cadence: [s.stream for s in specs] for cadence, specs in catalogue.by_cadence().items()}
    assert groups == {
        "every_2d": ["deals", "companies"],
        "cron_0_6_x_x_1to5": ["owners"],
        "cron_0_6_x_x_1and5": ["contacts"],
    }


def test_one_airbyte_connection_has_one_cadence(tmp_path: Path) -> None:
    """One Airbyte job syncs all of a connection's streams, so they cannot run on different schedules."""
    path = _write(tmp_path, _stream(stream="deals"), _stream(stream="companies", frequency="1d"))
    with pytest.raises(CatalogueError) as error:
        load_catalogue(path)
    assert str(error.value).startswith("crm_streams.yml: stream 'hubspot.companies': 'frequency' '1d' differs")
    assert "airbyte_connection_hubspot" in str(error.value)
