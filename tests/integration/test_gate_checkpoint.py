"""The GX checkpoint wrapper on real PostgreSQL: failures, redaction, and rules that cannot run."""

from __future__ import annotations

import psycopg
import pytest

from crm_pipeline.quality.checkpoint import REDACTED, run_checkpoint
from crm_pipeline.quality.rules import Rule
from crm_pipeline.warehouse.url import WarehouseUrl

pytestmark = pytest.mark.integration


@pytest.fixture
def people(warehouse: WarehouseUrl) -> WarehouseUrl:
    with psycopg.connect(warehouse.libpq()) as conn:
        conn.execute("create table people (id int, email text)")
        conn.execute("insert into people values (1, 'a@example.com'), (2, 'not-an-email'), (null, 'b@example.com')")
    return warehouse


def _rule(name: str, expectation: str, severity: str = "error", pii: bool = False, **kwargs: object) -> Rule:
    return Rule(name, name, str(kwargs.get("column")), severity, expectation, dict(kwargs), pii=pii)  # type: ignore[arg-type]


def test_failures_are_counted_and_pii_samples_redacted(people: WarehouseUrl) -> None:
    report = run_checkpoint(
        people,
        "people",
        "select * from people",
        [
            _rule("id_not_null", "ExpectColumnValuesToNotBeNull", column="id"),
            _rule("email_format", "ExpectColumnValuesToMatchRegex", pii=True, column="email", regex=r"^[^@]+@[^@]+$"),
            _rule("few_rows", "ExpectTableRowCountToBeBetween", severity="warn", max_value=2),
        ],
    )
    outcomes = {o.name: o for o in report.outcomes}
    assert outcomes["id_not_null"].unexpected_count == 1
    assert outcomes["email_format"].sample == [REDACTED], "the failing email itself never leaves the database"
    assert [o.name for o in report.warnings] == ["few_rows"]
    assert not report.passed
    assert "not-an-email" not in str(report.summary())


def test_a_rule_that_cannot_run_fails_and_says_why(people: WarehouseUrl) -> None:
    report = run_checkpoint(
        people,
        "people",
        "select * from people",
        [
            _rule("ghost_not_null", "ExpectColumnValuesToNotBeNull", column="ghost"),
        ],
    )
    (outcome,) = report.outcomes
    assert not outcome.success
    assert str(outcome.observed).startswith("could not run:")
    assert "ghost" in str(outcome.observed)


def test_the_gate_sees_only_the_querys_rows_and_leaves_nothing_behind(people: WarehouseUrl) -> None:
    """GX validates a temporary view over the query; once the gate returns, no session of it is left holding a view
    on the table, so the loader can retype or drop it (what a schema change or a full-refresh swap does)."""
    report = run_checkpoint(
        people,
        "people",
        "select * from people where id is not null",
        [
            _rule("id_not_null", "ExpectColumnValuesToNotBeNull", column="id"),
            _rule("two", "ExpectTableRowCountToEqual", value=2),
        ],
    )
    assert report.passed, report.summary()
    with psycopg.connect(people.libpq(), autocommit=True) as conn:
        conn.execute("set lock_timeout = '5s'")
        conn.execute("alter table people alter column id type bigint")
        conn.execute("drop table people")
        views = conn.execute("select count(*) from pg_class where relname = 'gate_batch'").fetchone()
    assert views == (0,)


def test_samples_come_only_for_the_rules_that_failed_on_values(people: WarehouseUrl) -> None:
    """The first pass counts; the second fetches failing values of the rules that failed, and only theirs."""
    report = run_checkpoint(
        people,
        "people",
        "select * from people",
        [
            _rule("email_format", "ExpectColumnValuesToMatchRegex", column="email", regex=r"^[^@]+@[^@]+$"),
            _rule("ids_below_9", "ExpectColumnValuesToBeBetween", column="id", max_value=9),
            _rule("id_not_null", "ExpectColumnValuesToNotBeNull", column="id"),
        ],
    )
    outcomes = {o.name: o for o in report.outcomes}
    assert (outcomes["email_format"].unexpected_count, outcomes["email_format"].sample) == (1, ["not-an-email"])
    assert (outcomes["ids_below_9"].success, outcomes["ids_below_9"].sample) == (True, [])
    assert outcomes["id_not_null"].sample == [None]
    assert [o.name for o in report.outcomes] == ["email_format", "ids_below_9", "id_not_null"], "the rules' order"
    validated = [item["expectation_config"]["meta"]["rule"] for item in report.validation["results"]]  # type: ignore[index]
    assert validated == ["email_format", "ids_below_9", "id_not_null"], "one result per rule, samples merged in"


def test_an_unexpected_rows_rule_counts_the_rows_its_query_finds(people: WarehouseUrl) -> None:
    orphans = "select id from {batch} where id > 1"  # GX aliases a batch that no join names
    report = run_checkpoint(
        people,
        "people",
        "select * from people",
        [
            _rule("no_big_ids", "ExpectNoUnexpectedRows", unexpected_rows_query=orphans),
            _rule("no_negative_ids", "ExpectNoUnexpectedRows", unexpected_rows_query=orphans.replace("> 1", "< 0")),
        ],
    )
    outcomes = {o.name: o for o in report.outcomes}
    assert (outcomes["no_big_ids"].success, outcomes["no_big_ids"].observed) == (False, 1)
    assert (outcomes["no_negative_ids"].success, outcomes["no_negative_ids"].observed) == (True, 0)
