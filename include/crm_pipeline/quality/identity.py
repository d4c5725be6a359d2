"""How well the dbt model's identity resolution matches the simulator's ground truth (``crm_simulator.identity``).

Scored over pairs of source records: a pair is predicted to match when both records got the same key, and truly
matches when the simulator says they are the same real-world entity. Precision is the share of predicted pairs
that truly match, recall the share of true pairs that were predicted. Pairs are counted per group in SQL
(n·(n-1)/2), so scoring a million records needs no Python memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

# entity kind -> (resolved model, key column, source id column, SQL naming the simulator's stream of a record)
_MODELS = {
    "contact": (
        "staging.int_people__resolved",
        "contact_key",
        "source_person_id",
        "case when r.source_system = 'hubspot' then 'contacts' when r.record_type = 'lead' then 'Lead'"
        " else 'Contact' end",
    ),
    "company": (
        "staging.int_accounts__resolved",
        "account_key",
        "source_account_id",
        "case when r.source_system = 'hubspot' then 'companies' else 'Account' end",
    ),
    "owner": (
        "staging.int_owners__resolved",
        "owner_key",
        "source_owner_id",
        "case when r.source_system = 'hubspot' then 'owners' else 'User' end",
    ),
}


@dataclass(frozen=True)
class IdentityScore:
    kind: str
    records: int
    scored: int
    predicted_pairs: int
    true_pairs: int
    true_positive_pairs: int

    @property
    def precision(self) -> float:
        return self.true_positive_pairs / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.true_positive_pairs / self.true_pairs if self.true_pairs else 1.0


def score_identity(conn: psycopg.Connection, kind: str) -> IdentityScore:
    """Score the resolved ``kind`` ('contact', 'company' or 'owner') against the simulator's ground truth."""
    model, key, source_id, stream = _MODELS[kind]
    row = conn.execute(
        f"""
        with scored as (
            select r.{key} as predicted, i.entity_index as truth
            from {model} as r
            join crm_simulator.identity as i
              on i.source = r.source_system and i.entity_kind = %(kind)s
             and i.stream = {stream} and i.source_id = r.{source_id}
        ),
        predicted as (select count(*) as n from scored group by predicted),
        truth as (select count(*) as n from scored group by truth),
        agreed as (select count(*) as n from scored group by predicted, truth)
        select
            (select count(*) from {model}),
            (select count(*) from scored),
            (select coalesce(sum(n * (n - 1) / 2), 0) from predicted),
            (select coalesce(sum(n * (n - 1) / 2), 0) from truth),
            (select coalesce(sum(n * (n - 1) / 2), 0) from agreed)
        """,  # noqa: S608 - model, key and stream come from the constant table above
        {"kind": kind},
    ).fetchone()
    assert row is not None
    return IdentityScore(kind, *(int(v) for v in row))
