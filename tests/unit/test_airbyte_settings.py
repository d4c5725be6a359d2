"""The Airbyte sync timeout comes from the environment when DAGs are parsed: a bad value is named, not a float()."""

from __future__ import annotations

from datetime import timedelta

import pytest

from crm_pipeline.orchestration.airbyte import TIMEOUT_VARIABLE, sync_timeout


def test_the_timeout_defaults_to_two_hours_and_reads_minutes() -> None:
    assert sync_timeout({}) == timedelta(hours=2)
    assert sync_timeout({TIMEOUT_VARIABLE: " 45 "}) == timedelta(minutes=45)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("two hours", "must be a number of minutes, got 'two hours'"),
        ("0", "must be between 1 and 10080 minutes"),
        ("-5", "must be between 1 and 10080 minutes"),
        ("nan", "must be between 1 and 10080 minutes"),
        ("1e9", "must be between 1 and 10080 minutes"),
    ],
)
def test_a_bad_timeout_is_refused_with_the_variable_named(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=TIMEOUT_VARIABLE) as refused:
        sync_timeout({TIMEOUT_VARIABLE: value})
    assert message in str(refused.value)
