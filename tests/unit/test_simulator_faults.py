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
