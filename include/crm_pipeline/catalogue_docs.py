"""docs/streams.md, generated from the catalogue so the documentation of every stream cannot drift from it.

``crm catalogue-docs`` rewrites the file; a test fails when the committed file differs from what the catalogue
generates, so a catalogue change without its docs does not pass ``make test``.
"""

from __future__ import annotations

from pathlib import Path

from crm_pipeline.catalogue import Catalogue, StreamSpec, default_catalogue, parse_frequency
from crm_pipeline.paths import PROJECT_DIR

STREAMS_DOC = PROJECT_DIR / "docs" / "streams.md"


def _checks(spec: StreamSpec) -> str:
    return (
        "; ".join(
            f"{c.rule}({c.column}{' → ' + c.references if c.references else ''}, {c.severity})" for c in spec.checks
        )
        or "—"
    )


def _frequency(spec: StreamSpec) -> str:
    """The cadence and the extract DAG that keeps it."""
    parsed = parse_frequency(spec.frequency)
    every = f"`{spec.frequency}`" if isinstance(parsed, str) else f"every {spec.frequency}"
    return f"{every} (`crm_extract_{spec.cadence}`)"


def render(catalogue: Catalogue) -> str:
    lines = [
        "# Streams",
        "",
        "<!-- Generated from include/crm_streams.yml by `crm catalogue-docs`. Do not edit by hand. -->",
        "",
        "Every CRM object the pipeline extracts. Rules every stream gets from its entry: primary key not null and",
        "unique, contract columns present, rows per sync within range, cursor not in the future (timestamp cursors).",
        "Rows failing an error-severity row rule are quarantined; a batch with a larger failing share than its",
        "`max quarantine` is stopped whole (docs/operations.md).",
        "",
    ]
    for source in ("hubspot", "salesforce"):
        specs = [s for s in catalogue.streams if s.source == source]
        if not specs:
            continue
        lines += [
            f"## {source}",
            "",
            "| stream | sync mode | key | cursor | frequency | owner | rows per sync | rows per day | PII columns"
            " | checks | max quarantine | asset | enabled |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in specs:
            volume = s.expected_rows_per_sync
            cells = [
                f"`{s.stream}`",
                s.sync_mode,
                ", ".join(s.primary_key),
                s.cursor_field or "—",
                _frequency(s),
                s.owner,
                f"{volume.min:,} to {volume.max:,}",
                f"{s.expected_daily_rows:,}",
                ", ".join(f"{c} ({t})" for c, t in s.pii_columns.items()) or "—",
                _checks(s),
                f"{s.max_quarantine_share:.0%}, over {s.quarantine_floor} rows",
                f"`{s.asset_uri}`",
                "yes" if s.enabled else "no",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "Airbyte connection Variables: " + ", ".join(sorted({f"`{s.airbyte_connection.variable}`" for s in specs})),
            "",
        ]
        for s in specs:
            lines += [
                f"### `{s.source}.{s.stream}`",
                "",
                s.description or "",
                "",
                "Columns: " + ", ".join(f"`{c}` ({t})" for c, t in s.columns.items()),
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"


def write(path: Path = STREAMS_DOC) -> Path:
    path.write_text(render(default_catalogue()))
    return path
