"""Gate rules, derived from the catalogue, as Great Expectations expectations.

Every stream gets the rules its catalogue entry implies (primary key present and unique, cursor not in the
future, contract columns present, batch size in range) plus its declared ``checks``. Each rule has a stable
name (``hubspot.deals:non_negative:properties_amount``) so alerts, stored results and tests can name it.

A rule that judges single rows also carries ``failing_rows``: a query over the batch (``{batch}``) selecting the raw
ids of exactly the rows the GX expectation counts as unexpected (nulls pass, as in GX). The gate quarantines those
rows with it, so what GX counted and what is quarantined are the same rows; tests hold the two together.
"""

# ruff: noqa: S608  (SQL is assembled from catalogue identifiers, validated at load and quoted here)

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from crm_pipeline.catalogue import Check, Severity, StreamSpec
from crm_pipeline.sources.contract import AIRBYTE_COLUMNS, POSTGRES_TYPES

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
    failing_rows: str | None = None  # row-level rules: select of the failing rows' raw ids from {batch}
    reason: str = ""  # why a failing row is quarantined, in words (stored with each quarantined row)


def quote_ident(name: str) -> str:
    """A PostgreSQL quoted identifier (GX query assets take SQL text, not composed SQL)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A PostgreSQL string literal (standard_conforming_strings is on since PostgreSQL 9.1)."""
    return "'" + value.replace("'", "''") + "'"


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
                failing_rows=_where(f"batch.{quote_ident(pk)} is null"),
                reason=f"primary key {pk} is null",
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
    rules.append(
        Rule(
            f"{key}:contract_column_types",
            "contract_column_types",
            None,
            "error",
            "ExpectNoUnexpectedRows",
            {"unexpected_rows_query": _mistyped_columns_query(spec)},
        )
    )
    rules.append(
        Rule(
            f"{key}:no_unexpected_columns",
            "no_unexpected_columns",
            None,
            "warn",  # a new source column breaks nothing (staging selects by name); people should still know
            "ExpectTableColumnsToMatchSet",
            {"column_set": [*expected_columns, *_projected_columns(spec)], "exact_match": True},
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
                failing_rows=_where(
                    f"batch.{quote_ident(spec.cursor_field)} > {quote_literal((now + CURSOR_SKEW).isoformat())}"
                ),
                reason=f"cursor {spec.cursor_field} is in the future",
            )
        )
    for check in spec.checks:
        expectation, kwargs = _check_expectation(spec, check)
        failing_rows, reason = _check_failing_rows(spec, check)
        rules.append(
            Rule(
                f"{key}:{check.rule}:{check.column}",
                check.rule,
                check.column,
                check.severity,
                expectation,
                kwargs,
                pii=check.column in spec.pii_columns,
                failing_rows=failing_rows,
                reason=reason,
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
    if check.rule == "foreign_key":
        # GX has no cross-table expectation; an unexpected-rows expectation (gx_expectations.py) counts what our
        # query finds in the batch.
        return "ExpectNoUnexpectedRows", {"unexpected_rows_query": _check_failing_rows(spec, check)[0]}
    return "ExpectColumnValuesToNotBeNull", {"column": check.column}


def _where(predicate: str) -> str:
    return f"select batch._airbyte_raw_id from {{batch}} as batch where {predicate}"


def _check_failing_rows(spec: StreamSpec, check: Check) -> tuple[str, str]:
    """The query selecting the rows failing ``check`` (as GX judges them: nulls pass), and the reason in words."""
    column = f"batch.{quote_ident(check.column)}"
    if check.rule == "email_format":
        return _where(f"{column} !~ {quote_literal(EMAIL_PATTERN)}"), f"{check.column} is not an email address"
    if check.rule == "non_negative":
        numeric = spec.columns[check.column] == "union"
        value = f"batch.{quote_ident(check.column + NUMERIC_SUFFIX)}" if numeric else column
        return _where(f"{value} < 0"), f"{check.column} is negative"
    if check.rule == "accepted_values":
        values = ", ".join(quote_literal(v) for v in check.values)
        return _where(f"{column} not in ({values})"), f"{check.column} is not one of the accepted values"
    if check.rule == "foreign_key":
        source, stream, key, field = check.reference()
        parent = _parent_keys(check)
        what = f"a {source}.{stream} record" if field is None else f"a {field} in {source}.{stream}.{key}"
        reason = f"{check.column} does not resolve to {what}"
        # An anti-join, so that GX leaves the batch un-aliased (it aliases {batch} itself in join-free queries).
        if spec.columns[check.column] == "array":  # every element must resolve
            return (
                f"select distinct batch._airbyte_raw_id from {{batch}} as batch"
                f" cross join lateral jsonb_array_elements_text({column}) as element (id)"
                f" left join {parent} as parent on parent.id = element.id"
                f" where parent.id is null"
            ), reason
        return (
            f"select batch._airbyte_raw_id from {{batch}} as batch"
            f" left join {parent} as parent on parent.id = {column}::text"
            f" where {column} is not null and parent.id is null"
        ), reason
    return _where(f"{column} is null"), f"{check.column} is null"


def _parent_keys(check: Check) -> str:
    """The keys a foreign key may resolve to, as a relation with one column, ``id``: the referenced raw table's
    column, or the ``field`` of every object in its array column (``hubspot.deal_pipelines.stages[].stageId``)."""
    source, stream, column, field = check.reference()
    parent = f"{quote_ident('raw_' + source)}.{quote_ident(stream)}"
    if field is None:
        return f"(select {quote_ident(column)}::text as id from {parent})"
    return (
        f"(select element ->> {quote_literal(field)} as id from {parent}"
        f" cross join lateral jsonb_array_elements({quote_ident(column)}) as element)"
    )


def _mistyped_columns_query(spec: StreamSpec) -> str:
    """The contract columns whose type in the raw table is not the one the destination writes for them (a type
    change is schema drift; a missing column is ``contract_columns_present``'s to report). Read from the catalog,
    whatever the batch holds: the batch's columns are the table's, and an empty batch must not hide a retyped
    table."""
    expected = [*AIRBYTE_COLUMNS, *((name, POSTGRES_TYPES[kind]) for name, kind in spec.columns.items())]
    values = ", ".join(f"({quote_literal(name)}, {quote_literal(pg_type)}::regtype)" for name, pg_type in expected)
    table = quote_literal(f"{quote_ident(spec.raw_schema)}.{quote_ident(spec.stream)}")
    return (
        "select expected.column_name, format_type(attribute.atttypid, attribute.atttypmod) as actual_type"
        f" from (values {values}) as expected (column_name, expected_type)"
        f" join pg_attribute as attribute on attribute.attrelid = {table}::regclass"
        " and attribute.attname = expected.column_name and not attribute.attisdropped"
        # GX wants {batch} in the query; a lateral limit-1 names it without scanning it or filtering on it.
        " left join lateral (select 1 from {batch} as batch_rows limit 1) as any_row on true"
        " where attribute.atttypid <> expected.expected_type"
    )


def _projected_columns(spec: StreamSpec) -> list[str]:
    """Columns the batch query adds: numeric views of JSON number columns that numeric rules check."""
    return [
        c.column + NUMERIC_SUFFIX for c in spec.checks if c.rule == "non_negative" and spec.columns[c.column] == "union"
    ]


def raw_batch_query(spec: StreamSpec, sync_id: int) -> str:
    """The rows one sync delivered: Airbyte stamps each with its ``sync_id`` in ``_airbyte_meta``."""
    extra = [numeric_projection(column.removesuffix(NUMERIC_SUFFIX)) for column in _projected_columns(spec)]
    projection = ", ".join(["*", *extra])
    # Schema and table are catalogue identifiers (validated against IDENTIFIER); the sync id is an int.
    return (
        f"select {projection} from {quote_ident(spec.raw_schema)}.{quote_ident(spec.stream)}"
        f" where (_airbyte_meta ->> 'sync_id')::bigint = {int(sync_id)}"
    )
