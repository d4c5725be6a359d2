"""Mart figures against the raw tables: the same business numbers computed two ways must agree exactly.

The raw side is written here, independently of the dbt models: the newest row per primary key straight from the
raw tables Airbyte wrote, of the batches the raw gates judged (until the transform run's cutoff), minus the rows
they quarantined and what the sources mark as gone (HubSpot
``archived`` and merged-away contacts, Salesforce ``IsDeleted``, converted leads, inactive engagements). A
difference means a staging filter, a join or an aggregation in dbt lost or duplicated something.
"""

# ruff: noqa: S608  (every query is assembled from the constant fragments in this module, nothing from input)

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

import psycopg

from crm_pipeline.quality.checkpoint import GateReport, RuleOutcome
from crm_pipeline.quality.quarantine import ensure_quarantine
from crm_pipeline.warehouse.publish import BUILD_SCHEMA, PUBLISHED_SCHEMA


def _latest(table: str, key: str, cursor: str, stream: str) -> str:
    """The newest version of every record of a raw table, leaving out rows the raw gates quarantined and, once
    gates run, batches they did not judge (the marker becomes that condition in ``reconcile``)."""
    return (
        f"select distinct on ({key}) * from {table} as raw_rows where not exists (select from crm_audit.quarantine"
        f" as quarantined where quarantined.raw_id = raw_rows._airbyte_raw_id) and /*judged:{stream}*/true"
        f" order by {key}, {cursor} desc nulls last, _airbyte_extracted_at desc"
    )


_JUDGED = re.compile(r"/\*judged:([\w.]+)\*/true")
_JUDGED_SQL = (
    "exists (select from crm_audit.batch_verdicts as judged where judged.stream = '{stream}'"
    " and judged.sync_id = (raw_rows._airbyte_meta ->> 'sync_id')::bigint and judged.judged_at <= {cutoff})"
)

# What "live" is decided on, per raw table.
_LATEST = {
    "companies": _latest("raw_hubspot.companies", "id", '"updatedAt"', "hubspot.companies"),
    "contacts": _latest("raw_hubspot.contacts", "id", '"updatedAt"', "hubspot.contacts"),
    "deals": _latest("raw_hubspot.deals", "id", '"updatedAt"', "hubspot.deals"),
    "deals_archived": _latest("raw_hubspot.deals_archived", "id", '"archivedAt"', "hubspot.deals_archived"),
    "engagements": _latest("raw_hubspot.engagements", "id", '"lastUpdated"', "hubspot.engagements"),
    **{
        stream: _latest(f'raw_salesforce."{stream}"', '"Id"', '"SystemModstamp"', f"salesforce.{stream}")
        for stream in ("Account", "Contact", "Lead", "Opportunity", "Task")
    },
}
_HUBSPOT_AMOUNT = "(properties_amount #>> '{}')::numeric"
# A deal is live unless archived (in HubSpot's recycle bin) and not restored since (changed after its archival).
_LIVE_DEAL = (
    "not coalesce(archived, false) and not exists (select from ({archived}) as bin"
    ' where bin.id = d.id and bin."archivedAt" >= d."updatedAt")'
)
# The stage ids the portal's own pipelines mark closed (a full refresh stream: every row of it is current).
_CLOSED_STAGES = (
    "select stage ->> 'stageId' from raw_hubspot.deal_pipelines as raw_rows"
    " cross join lateral jsonb_array_elements(raw_rows.stages) as stage"
    " where (stage -> 'metadata' ->> 'isClosed')::boolean and stage ->> 'stageId' is not null"
    " and not exists (select from crm_audit.quarantine as quarantined"
    " where quarantined.raw_id = raw_rows._airbyte_raw_id)"
    " and /*judged:hubspot.deal_pipelines*/true"
)

_LIVE_DEAL_SQL = _LIVE_DEAL.format(archived=_LATEST["deals_archived"])

RAW_FIGURES = {
    "live account records": f"""
        select (select count(*) from ({_LATEST["companies"]}) c where not coalesce(archived, false))
             + (select count(*) from ({_LATEST["Account"]}) a where not coalesce("IsDeleted", false))""",
    "live person records": f"""
        with hubspot as (select * from ({_LATEST["contacts"]}) c where not coalesce(archived, false)),
        merged_away as (
            select trim(m) as id from hubspot, unnest(string_to_array(properties_hs_merged_object_ids, ';')) m
        )
        select (select count(*) from hubspot where id not in (select id from merged_away))
             + (select count(*) from ({_LATEST["Contact"]}) c where not coalesce("IsDeleted", false))
             + (select count(*) from ({_LATEST["Lead"]}) l
                where not coalesce("IsDeleted", false) and not coalesce("IsConverted", false))""",
    "live opportunities": f"""
        select (select count(*) from ({_LATEST["deals"]}) d where {_LIVE_DEAL_SQL})
             + (select count(*) from ({_LATEST["Opportunity"]}) o where not coalesce("IsDeleted", false))""",
    "won amount": f"""
        select coalesce((select sum({_HUBSPOT_AMOUNT}) from ({_LATEST["deals"]}) d
                         where {_LIVE_DEAL_SQL} and coalesce(properties_hs_is_closed_won, false)), 0)
             + coalesce((select sum("Amount") from ({_LATEST["Opportunity"]}) o
                         where not coalesce("IsDeleted", false) and coalesce("IsWon", false)), 0)""",
    "open pipeline amount": f"""
        select coalesce((select sum({_HUBSPOT_AMOUNT}) from ({_LATEST["deals"]}) d
                         where {_LIVE_DEAL_SQL} and not coalesce(properties_hs_is_closed_won, false)
                           and coalesce(properties_dealstage, '') not in ({_CLOSED_STAGES})), 0)
             + coalesce((select sum("Amount") from ({_LATEST["Opportunity"]}) o
                         where not coalesce("IsDeleted", false) and not coalesce("IsClosed", false)), 0)""",
    "live activities": f"""
        select (select count(*) from ({_LATEST["engagements"]}) e where coalesce(active, true))
             + (select count(*) from ({_LATEST["Task"]}) t where not coalesce("IsDeleted", false))""",
}

# Mart side; {marts} is the schema audited (marts_build before publishing, marts after).
MART_FIGURES = {
    "live account records": "select sum(source_record_count) from {marts}.dim_accounts",
    "live person records": "select sum(source_record_count) from {marts}.dim_contacts",
    "live opportunities": "select count(*) from {marts}.fct_opportunities",
    "won amount": "select coalesce(sum(amount), 0) from {marts}.fct_opportunities where stage_category = 'won'",
    "open pipeline amount": "select coalesce(sum(amount), 0) from {marts}.fct_opportunities"
    " where stage_category = 'open'",
    "live activities": "select count(*) from {marts}.fct_activities",
}


@dataclass(frozen=True)
class Reconciliation:
    figure: str
    raw: Decimal
    mart: Decimal

    @property
    def difference(self) -> Decimal:
        return self.mart - self.raw


def reconcile(conn: psycopg.Connection, marts_schema: str = PUBLISHED_SCHEMA) -> list[Reconciliation]:
    """Every figure computed from raw and from the marts in ``marts_schema``, in a fixed order."""
    if marts_schema not in (PUBLISHED_SCHEMA, BUILD_SCHEMA):
        raise ValueError(f"marts_schema must be {PUBLISHED_SCHEMA!r} or {BUILD_SCHEMA!r}, got {marts_schema!r}")
    ensure_quarantine(conn)
    judged = _judged_condition(conn)
    results = []
    for figure, raw_sql in RAW_FIGURES.items():
        raw = conn.execute(_JUDGED.sub(lambda m: judged.format(stream=m.group(1)), raw_sql)).fetchone()[0]  # type: ignore[index]
        mart = conn.execute(MART_FIGURES[figure].format(marts=marts_schema)).fetchone()[0]  # type: ignore[index]
        results.append(Reconciliation(figure, Decimal(raw or 0), Decimal(mart or 0)))
    return results


def _judged_condition(conn: psycopg.Connection) -> str:
    """What staging reads (dbt macro ``gated_source``): every row until gates run here; then the batches judged
    until the last transform run's cutoff."""
    verdicts, cutoff = conn.execute(
        "select to_regclass('crm_audit.batch_verdicts'), to_regclass('crm_audit.transform_cutoff')"
    ).fetchone()  # type: ignore[misc]
    if verdicts is None:
        return "true"
    until = "coalesce((select judged_before from crm_audit.transform_cutoff), 'infinity')" if cutoff else "now()"
    return _JUDGED_SQL.replace("{cutoff}", until)


def reconciliation_report(conn: psycopg.Connection, marts_schema: str) -> GateReport:
    """The reconciliation as a gate report (one error-severity rule per figure), stored like any gate's."""
    outcomes = tuple(
        RuleOutcome(
            name=f"marts.reconciles_with_raw:{r.figure.replace(' ', '_')}",
            rule="reconciles_with_raw",
            column=None,
            severity="error",
            success=r.difference == 0,
            unexpected_count=None if r.difference == 0 else 1,
            element_count=None,
            sample=[] if r.difference == 0 else [f"raw {r.raw}, marts {r.mart}"],
            observed={"raw": str(r.raw), "marts": str(r.mart)},
        )
        for r in reconcile(conn, marts_schema)
    )
    return GateReport("mart__reconciliation", marts_schema, outcomes)
