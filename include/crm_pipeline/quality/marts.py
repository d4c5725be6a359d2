"""Rules for the marts analysts read, checked after dbt builds them."""

from __future__ import annotations

from dataclasses import dataclass

from crm_pipeline.quality.rules import Rule, quote_ident

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


MART_GATES: tuple[MartGate, ...] = (
    MartGate(
        name="mart__dim_contacts",
        schema="marts",
        table="dim_contacts",
        rules=(
            _rule("dim_contacts", "primary_key_not_null", "ExpectColumnValuesToNotBeNull", column="contact_id"),
            _rule("dim_contacts", "primary_key_unique", "ExpectColumnValuesToBeUnique", column="contact_id"),
            _rule("dim_contacts", "not_empty", "ExpectTableRowCountToBeBetween", min_value=1),
            _rule(
                "dim_contacts",
                "email_normalised",
                "ExpectColumnValuesToMatchRegex",
                column="email",
                regex=NORMALISED_EMAIL,
            ),
            _rule(
                "dim_contacts",
                "non_negative",
                "ExpectColumnValuesToBeBetween",
                column="won_amount",
                min_value=0,
            ),
        ),
    ),
)
