"""Rules for the marts analysts read, checked after dbt builds them into ``marts_build`` and before they are
published (write-audit-publish, see ``warehouse/publish.py``).

Besides each mart's own rules, the audit compares the build with what is published: a mart may not shrink by more
than a configured share (a refresh that wiped most of a source must not wipe the marts analysts read), and the
mart figures must reconcile with raw to the cent (``quality/reconcile.py``).

Every mart column dbt's ``meta`` marks as PII (``pii: hash`` or ``pii: mask``, as the catalogue's treatment) gets a
rule that each value looks treated: 64 hex digits for a hash, a character and ``***`` for a mask. A model edit that
lets a raw email through fails the audit and the marts stay as they were (``warehouse/pii.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from crm_pipeline.quality.rules import Rule, quote_ident
from crm_pipeline.warehouse.pii import TREATED_PATTERNS
from crm_pipeline.warehouse.publish import BUILD_SCHEMA


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
    _mart("dim_contacts", "contact_key", _non_negative("dim_contacts", "won_amount")),
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


def pii_columns(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mart -> {column: treatment} for the columns dbt's meta marks as PII in the marts layer (as written there:
    a value that is no treatment is refused when the rules are made)."""
    marts: dict[str, dict[str, Any]] = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model" or node["fqn"][1:2] != ["marts"]:
            continue
        for column in node["columns"].values():
            treatment = (column.get("config", {}).get("meta") or column.get("meta") or {}).get("pii")
            if treatment is not None:
                marts.setdefault(node["alias"] or node["name"], {})[column["name"]] = treatment
    return marts


def _pii_rule(mart: str, column: str, treatment: Any) -> Rule:
    if treatment not in TREATED_PATTERNS:
        raise ValueError(
            f"dbt meta pii of {mart}.{column} is {treatment!r}; a mart column is {' or '.join(TREATED_PATTERNS)}"
        )
    rule = _rule(
        mart, f"pii_{treatment}ed", "ExpectColumnValuesToMatchRegex", column=column, regex=TREATED_PATTERNS[treatment]
    )
    # A failing value may be the raw email itself: its samples are redacted, as the raw gate's are.
    return replace(rule, pii=True)


def mart_gates(manifest: dict[str, Any]) -> tuple[MartGate, ...]:
    """MART_GATES, each with the PII rules of its mart, plus a gate for every other mart holding PII columns."""
    pii = pii_columns(manifest)
    gates = []
    for gate in MART_GATES:
        rules = tuple(_pii_rule(gate.table, c, t) for c, t in sorted(pii.pop(gate.table, {}).items()))
        gates.append(MartGate(gate.name, gate.schema, gate.table, (*gate.rules, *rules)))
    for table, columns in sorted(pii.items()):
        rules = tuple(_pii_rule(table, c, t) for c, t in sorted(columns.items()))
        gates.append(MartGate(f"mart__{table}", BUILD_SCHEMA, table, rules))
    return tuple(gates)
