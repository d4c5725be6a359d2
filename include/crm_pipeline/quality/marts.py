"""Rules for the marts analysts read, checked after dbt builds them into ``marts_build`` and before they are
published (write-audit-publish, see ``warehouse/publish.py``).

Besides each mart's own rules, the audit compares the build with what is published: a mart may not shrink by more
than a configured share (a refresh that wiped most of a source must not wipe the marts analysts read), and the
mart figures must reconcile with raw to the cent (``quality/reconcile.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from crm_pipeline.quality.rules import Rule, quote_ident
from crm_pipeline.warehouse.publish import BUILD_SCHEMA

NORMALISED_EMAIL = r"^[a-z0-9._%+'-]+@[a-z0-9.-]+\.[a-z0-9-]+$"


@dataclass(frozen=True)
class MartGate:
    name: str
    schema: str
    table: str
    rules: tuple[Rule, ...]

    @property
    def query(self) -> str:
        return f"select * from {quote_ident(self.schema)}.{quote_ident(self.table)}"  # noqa: S608 - quoted identifiers


def _rule(mart: str, rule: str, expectation: str, **kwargs: object) -> Rule:
    column = kwargs.get("column")
    name = f"marts.{mart}:{rule}" + (f":{column}" if column else "")
    return Rule(name, rule, str(column) if column else None, "error", expectation, dict(kwargs))


def _mart(table: str, key: str, *rules: Rule) -> MartGate:
    """A mart's gate: its key not null and unique, the table not empty, plus ``rules``."""
    keyed = (
        _rule(table, "primary_key_not_null", "ExpectColumnValuesToNotBeNull", column=key),
        _rule(table, "primary_key_unique", "ExpectColumnValuesToBeUnique", column=key),
        _rule(table, "not_empty", "ExpectTableRowCountToBeBetween", min_value=1),
    )
    return MartGate(name=f"mart__{table}", schema=BUILD_SCHEMA, table=table, rules=(*keyed, *rules))


def _non_negative(mart: str, column: str) -> Rule:
    return _rule(mart, "non_negative", "ExpectColumnValuesToBeBetween", column=column, min_value=0)


MART_GATES: tuple[MartGate, ...] = (
    _mart(
        "dim_contacts",
        "contact_key",
        _rule(
            "dim_contacts", "email_normalised", "ExpectColumnValuesToMatchRegex", column="email", regex=NORMALISED_EMAIL
        ),
        _non_negative("dim_contacts", "won_amount"),
    ),
    _mart(
        "dim_accounts",
        "account_key",
        _non_negative("dim_accounts", "open_pipeline_amount"),
        _non_negative("dim_accounts", "won_amount"),
    ),
    _mart(
        "fct_opportunities",
        "opportunity_key",
        _non_negative("fct_opportunities", "amount"),
        _rule(
            "fct_opportunities",
            "known_stage_category",
            "ExpectColumnValuesToBeInSet",
            column="stage_category",
            value_set=["open", "won", "lost"],
        ),
    ),
)


def against_published(gate: MartGate, published_rows: int | None, max_shrink: float) -> MartGate:
    """``gate`` plus a rule that the build keeps at least ``1 - max_shrink`` of the published rows."""
    if published_rows is None:
        return gate
    floor = math.ceil(published_rows * (1 - max_shrink))
    rule = _rule(gate.table, "row_count_vs_published", "ExpectTableRowCountToBeBetween", min_value=floor)
    return MartGate(gate.name, gate.schema, gate.table, (*gate.rules, rule))
