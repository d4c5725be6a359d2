"""Gate rules follow from the catalogue entry: keys, contract, volume, cursor and the declared checks."""

from __future__ import annotations

from datetime import UTC, datetime

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.quality.rules import raw_batch_query, raw_rules


def test_deals_rules_are_named_by_stream_rule_and_column() -> None:
    spec = default_catalogue().get("hubspot.deals")
    names = {r.name for r in raw_rules(spec, datetime.now(UTC))}
    assert names == {
        "hubspot.deals:primary_key_not_null:id",
        "hubspot.deals:primary_key_unique:id",
        "hubspot.deals:contract_columns_present",
        "hubspot.deals:contract_column_types",
        "hubspot.deals:no_unexpected_columns",
        "hubspot.deals:row_count_in_range",
        "hubspot.deals:cursor_not_in_future:updatedAt",
        "hubspot.deals:non_negative:properties_amount",
        "hubspot.deals:foreign_key:properties_dealstage",
        "hubspot.deals:foreign_key:companies",
    }


def test_row_rules_carry_the_query_that_selects_their_failing_rows_and_batch_rules_do_not() -> None:
    rules = {r.rule: r for r in raw_rules(default_catalogue().get("hubspot.deals"), datetime.now(UTC))}
    row_level = {name for name, rule in rules.items() if rule.failing_rows}
    assert row_level == {
        "primary_key_not_null",
        "cursor_not_in_future",
        "non_negative",
        "foreign_key",
    }
    assert all("{batch}" in rules[name].failing_rows and rules[name].reason for name in row_level)  # type: ignore[operator]


def test_a_deal_stage_must_be_a_stage_of_one_of_the_portals_own_pipelines() -> None:
    """No fixed list of stage ids: a custom pipeline's numeric stage ids are as good as ``closedwon``."""
    spec = default_catalogue().get("hubspot.deals")
    (stage,) = [r for r in raw_rules(spec, datetime.now(UTC)) if r.name.endswith(":properties_dealstage")]
    assert (stage.rule, stage.severity) == ("foreign_key", "warn"), "pipelines sync daily, deals hourly"
    assert 'jsonb_array_elements("stages")' in stage.failing_rows  # type: ignore[operator]
    assert "->> 'stageId'" in stage.failing_rows  # type: ignore[operator]
    assert "closedwon" not in stage.failing_rows  # type: ignore[operator]
    assert stage.reason == "properties_dealstage does not resolve to a stageId in hubspot.deal_pipelines.stages"


def test_a_foreign_key_is_checked_in_sql_by_an_unexpected_rows_expectation() -> None:
    spec = default_catalogue().get("salesforce.Contact")
    (fk,) = [r for r in raw_rules(spec, datetime.now(UTC)) if r.rule == "foreign_key"]
    assert fk.expectation == "ExpectNoUnexpectedRows"
    assert fk.kwargs["unexpected_rows_query"] == fk.failing_rows
    assert 'left join (select "Id"::text as id from "raw_salesforce"."Account") as parent' in fk.failing_rows  # type: ignore[operator]
    assert fk.reason == "AccountId does not resolve to a salesforce.Account record"


def test_union_columns_are_checked_through_a_numeric_projection() -> None:
    spec = default_catalogue().get("hubspot.deals")
    (rule,) = [r for r in raw_rules(spec, datetime.now(UTC)) if r.rule == "non_negative"]
    assert rule.kwargs["column"] == "properties_amount__numeric"
    query = raw_batch_query(spec, 42)
    assert 'as "properties_amount__numeric"' in query
    assert query.endswith("(_airbyte_meta ->> 'sync_id')::bigint = 42")


def test_sync_id_must_be_an_integer() -> None:
    import pytest

    spec = default_catalogue().get("hubspot.contacts")
    with pytest.raises(ValueError, match="invalid literal"):
        raw_batch_query(spec, "7; drop table x")  # type: ignore[arg-type]


def test_duplicate_keys_stop_dedup_streams_but_only_warn_on_append_streams() -> None:
    def severity(key: str) -> str:
        spec = default_catalogue().get(key)
        (rule,) = [r for r in raw_rules(spec, datetime.now(UTC)) if r.rule == "primary_key_unique"]
        return rule.severity

    assert severity("hubspot.contacts") == "error"
    assert severity("hubspot.engagements") == "warn", "append streams get duplicates by design (at-least-once)"


def test_checks_on_pii_columns_are_marked_for_redaction() -> None:
    spec = default_catalogue().get("hubspot.contacts")
    (email,) = [r for r in raw_rules(spec, datetime.now(UTC)) if r.rule == "email_format"]
    assert email.pii
    assert not any(r.pii for r in raw_rules(default_catalogue().get("hubspot.deals"), datetime.now(UTC)))
