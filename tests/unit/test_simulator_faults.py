"""The fault switch corrupts a batch in the named way, lazily, without touching other batches."""

from __future__ import annotations

import pytest

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.sources.simulator.sync import BAD_ROWS, parse_faults, with_faults

DEALS = default_catalogue().get("hubspot.deals")


def _batch(n: int = 20) -> list[dict]:
    return [
        {"id": str(i), "properties_amount": 10.0, "properties_dealstage": "qualifiedtobuy", "companies": ["1"]}
        for i in range(n)
    ]


@pytest.mark.parametrize(
    ("kind", "column", "bad"),
    [
        ("null_primary_key", "id", None),
        ("negative_amount", "properties_amount", -10.0),
        ("unknown_stage", "properties_dealstage", "stage_that_does_not_exist"),
        ("orphan_foreign_key", "companies", ["does-not-exist-0"]),
    ],
)
def test_row_faults_corrupt_the_first_rows_only(kind: str, column: str, bad: object) -> None:
    out = list(with_faults(DEALS, iter(_batch()), {kind}))
    assert len(out) == 20
    assert out[0][column] == bad
    assert all(r[column] != bad for r in out[BAD_ROWS:])


def test_duplicates_and_empty_batches() -> None:
    duplicated = list(with_faults(DEALS, iter(_batch()), {"duplicate_primary_key"}))
    assert len(duplicated) == 20 + BAD_ROWS
    assert [r["id"] for r in duplicated[-BAD_ROWS:]] == [str(i) for i in range(BAD_ROWS)]
    assert list(with_faults(DEALS, iter(_batch()), {"empty_batch"})) == []


def test_faults_are_parsed_and_validated() -> None:
    (fault,) = parse_faults('[{"stream": "hubspot.deals", "kind": "negative_amount", "sync": 2}]')
    assert (fault.stream, fault.kind, fault.sync) == ("hubspot.deals", "negative_amount", 2)
    assert parse_faults("") == ()
    with pytest.raises(ValueError, match="kind"):
        parse_faults('[{"stream": "hubspot.deals", "kind": "gremlins"}]')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{oops", "crm_simulator_faults is not valid JSON: Expecting property name"),
        ('{"stream": "hubspot.deals"}', "crm_simulator_faults must be a JSON list"),
        ('[{"stream": "hubspot.deal", "kind": "negative_amount"}]', "[0]: 'stream' 'hubspot.deal' is not in the cat"),
        ('[{"stream": "hubspot.deals", "kind": "empty_batch", "sync": 0}]', "[0]: 'sync' counts from 1"),
        ('[{"stream": "hubspot.owners", "kind": "negative_amount"}]', "[0]: 'kind' 'negative_amount' needs one of"),
        ('[{"stream": "hubspot.engagements", "kind": "naive_timestamps"}]', "needs a timestamp cursor"),
        ('[{"stream": "hubspot.deals", "kind": "empty_batch"}, 3]', "[1]: '(entry)' Input should be a valid dict"),
    ],
    ids=["json", "not-a-list", "unknown-stream", "sync-0", "no-column", "integer-cursor", "not-an-object"],
)
def test_a_fault_that_could_never_fire_is_refused_with_its_position(text: str, message: str) -> None:
    """A misspelt stream used to inject nothing, silently: a test of the gates then tested nothing."""
    with pytest.raises(ValueError) as refused:
        parse_faults(text)
    assert message in str(refused.value)
