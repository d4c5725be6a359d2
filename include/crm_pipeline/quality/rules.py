"""Gate rules, derived from the catalogue, as Great Expectations expectations.

Every stream gets the rules its catalogue entry implies (primary key present and unique, cursor not in the
future, contract columns present, batch size in range) plus its declared ``checks``. Each rule has a stable
name (``hubspot.deals:non_negative:properties_amount``) so alerts, stored results and tests can name it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crm_pipeline.catalogue import Check, Severity, StreamSpec
from crm_pipeline.sources.contract import AIRBYTE_COLUMNS

# Lenient on case and padding (staging normalises those) but strict on shape: one @, a dot in the domain.
EMAIL_PATTERN = r"^\s*[^@\s]+@[^@\s]+\.[^@\s]+\s*$"
CURSOR_SKEW = timedelta(minutes=5)
NUMERIC_SUFFIX = "__numeric"


@dataclass(frozen=True)
class Rule:
    name: str
    rule: str
    column: str | None
    severity: Severity
    expectation: str  # the GX expectation class name
    kwargs: dict[str, Any]
    pii: bool = False  # the column holds personal data: failing samples are redacted


def quote_ident(name: str) -> str:
    """A PostgreSQL quoted identifier (GX query assets take SQL text, not composed SQL)."""
    return '"' + name.replace('"', '""') + '"'


def numeric_projection(column: str) -> str:
    """SQL turning a JSON number or numeric string (HubSpot ``union`` columns) into numeric, else null."""
    quoted = quote_ident(column)
    text = f"({quoted} #>> '{{}}')"
    return (
        f"case when {text} ~ '^\\s*-?[0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?\\s*$' then {text}::numeric end"
        f' as "{column}{NUMERIC_SUFFIX}"'
    )


def raw_rules(spec: StreamSpec, now: datetime) -> list[Rule]:
    key = spec.key
    rules: list[Rule] = []
    for pk in spec.primary_key:
        rules.append(
            Rule(
                f"{key}:primary_key_not_null:{pk}",
                "primary_key_not_null",
                pk,
                "error",
                "ExpectColumnValuesToNotBeNull",
                {"column": pk},
            )
        )
    # Append streams get duplicate keys by design (Airbyte's at-least-once delivery): there it is a finding, not a stop.
    unique_severity: Severity = "warn" if spec.sync_mode == "incremental_append" else "error"
    if len(spec.primary_key) == 1:
        pk = spec.primary_key[0]
        rules.append(
            Rule(
                f"{key}:primary_key_unique:{pk}",
                "primary_key_unique",
                pk,
                unique_severity,
                "ExpectColumnValuesToBeUnique",
                {"column": pk},
            )
        )
    else:
        rules.append(
            Rule(
                f"{key}:primary_key_unique",
                "primary_key_unique",
                None,
                unique_severity,
                "ExpectCompoundColumnsToBeUnique",
                {"column_list": list(spec.primary_key)},
            )
        )
    expected_columns = [name for name, _ in AIRBYTE_COLUMNS] + list(spec.columns)
    rules.append(
        Rule(
            f"{key}:contract_columns_present",
            "contract_columns_present",
            None,
            "error",
            "ExpectTableColumnsToMatchSet",
            {"column_set": expected_columns, "exact_match": False},
        )
    )
    volume = spec.expected_rows_per_sync
    rules.append(
        Rule(
            f"{key}:row_count_in_range",
            "row_count_in_range",
            None,
            "error",
            "ExpectTableRowCountToBeBetween",
            {"min_value": volume.min, "max_value": volume.max},
        )
    )
    if spec.cursor_field and spec.columns[spec.cursor_field].startswith("timestamp"):
        rules.append(
            Rule(
                f"{key}:cursor_not_in_future:{spec.cursor_field}",
                "cursor_not_in_future",
                spec.cursor_field,
                "error",
                "ExpectColumnValuesToBeBetween",
                {"column": spec.cursor_field, "max_value": (now + CURSOR_SKEW).isoformat()},
            )
        )
    for check in spec.checks:
        expectation, kwargs = _check_expectation(spec, check)
        rules.append(
            Rule(
                f"{key}:{check.rule}:{check.column}",
                check.rule,
                check.column,
                check.severity,
                expectation,
                kwargs,
                pii=check.column in spec.pii_columns,
            )
        )
    return rules


def _check_expectation(spec: StreamSpec, check: Check) -> tuple[str, dict[str, Any]]:
    """The GX expectation and its arguments for one declared check."""
    if check.rule == "email_format":
        return "ExpectColumnValuesToMatchRegex", {"column": check.column, "regex": EMAIL_PATTERN}
    if check.rule == "non_negative":
        column = check.column + NUMERIC_SUFFIX if spec.columns[check.column] == "union" else check.column
        return "ExpectColumnValuesToBeBetween", {"column": column, "min_value": 0}
    if check.rule == "accepted_values":
        return "ExpectColumnValuesToBeInSet", {"column": check.column, "value_set": list(check.values)}
    return "ExpectColumnValuesToNotBeNull", {"column": check.column}


def raw_batch_query(spec: StreamSpec, sync_id: int) -> str:
    """The rows one sync delivered: Airbyte stamps each with its ``sync_id`` in ``_airbyte_meta``."""
    extra = [
        numeric_projection(c.column)
        for c in spec.checks
        if c.rule == "non_negative" and spec.columns[c.column] == "union"
    ]
    projection = ", ".join(["*", *extra])
    # Schema and table are catalogue identifiers (validated against IDENTIFIER); the sync id is an int.
    return (
        f"select {projection} from {quote_ident(spec.raw_schema)}.{quote_ident(spec.stream)}"  # noqa: S608
        f" where (_airbyte_meta ->> 'sync_id')::bigint = {int(sync_id)}"
    )
