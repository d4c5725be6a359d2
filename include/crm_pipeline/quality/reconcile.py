"""Mart figures against the raw tables: the same business numbers computed two ways must agree exactly.

The raw side is written here, independently of the dbt models: the newest row per primary key straight from the
raw tables Airbyte wrote, of the batches the raw gates judged (until the transform run's cutoff), minus the rows
they quarantined and what the sources mark as gone (HubSpot ``archived`` and merged-away contacts, Salesforce
``IsDeleted``, converted leads, inactive engagements). A difference means a staging filter, a join or an aggregation
in dbt lost or duplicated something.

One exception: a record whose raw rows staging cannot read (the destination replaced it with a version no gate has
let through) counts at the last judged version its staging model kept (dbt macro ``last_judged``), read from that
model, since raw no longer has it. A previous run built that row from raw and reconciled it. And a raw table the
destination changed (a column dropped or retyped) is read in its contract's shape, as staging reads it.
"""

# ruff: noqa: S608  (every query is assembled from the constant fragments in this module, nothing from input)

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

import psycopg

from crm_pipeline.catalogue import default_catalogue
from crm_pipeline.quality.checkpoint import GateReport, RuleOutcome
from crm_pipeline.quality.quarantine import ensure_quarantine
from crm_pipeline.sources.contract import contract_select
from crm_pipeline.warehouse.publish import BUILD_SCHEMA, PUBLISHED_SCHEMA


@dataclass(frozen=True)
class _Held:
    """Where a stream's records kept at their last judged version are (dbt macro ``last_judged``): the staging
    model, its key, and each raw column the figures read as an expression over the model's columns."""

    model: str
    key: str
    columns: dict[str, str]


def _unread(table: str, key: str, stream: str) -> str:
    """Keys of a raw table's rows that staging does not read (quarantined, or of a batch not judged in time)."""
    return (
        f"select raw_rows.{key}::text from /*raw:{stream}*/{table} as raw_rows where not (not exists"
        " (select from crm_audit.quarantine as quarantined where quarantined.raw_id = raw_rows._airbyte_raw_id)"
        f" and /*judged:{stream}*/true)"
    )


def _latest(table: str, key: str, cursor: str, stream: str, held: _Held | None = None) -> str:
    """The newest version of every record of a raw table, leaving out rows the raw gates quarantined and, once
    gates run, batches they did not judge (the marker becomes that condition in ``reconcile``). With ``held``,
    only the columns it names, and the records whose raw rows are all unread come from the staging model at the
    version it kept."""
    columns = "*" if held is None else ", ".join(f"{c}::text as {c}" if c == key else c for c in held.columns)
    newest = (
        f"select distinct on ({key}) {columns} from /*raw:{stream}*/{table} as raw_rows where not exists (select from"
        f" crm_audit.quarantine as quarantined where quarantined.raw_id = raw_rows._airbyte_raw_id)"
        f" and /*judged:{stream}*/true order by {key}, {cursor} desc nulls last, _airbyte_extracted_at desc"
    )
    if held is None:
        return newest
    kept = ", ".join(
        f"({expression})::text as {column}" if column == key else f"{expression} as {column}"
        for column, expression in held.columns.items()
    )
    return (
        f"({newest}) union all select {kept} from staging.{held.model} as kept"
        f" where kept.{held.key}::text in ({_unread(table, key, stream)})"
    )


_JUDGED = re.compile(r"/\*judged:([\w.]+)\*/true")
_RAW = re.compile(r"/\*raw:([\w.]+)\*/(\S+) as raw_rows")
_JUDGED_SQL = (
    "exists (select from crm_audit.batch_verdicts as judged where judged.stream = '{stream}'"
    " and judged.sync_id = (raw_rows._airbyte_meta ->> 'sync_id')::bigint and judged.judged_at <= {cutoff})"
)

_SALESFORCE_KEYS = {
    "Account": "account_id",
    "Contact": "contact_id",
    "Lead": "lead_id",
    "Opportunity": "opportunity_id",
}
_SALESFORCE_MODELS = {
    "Account": "stg_salesforce__accounts",
    "Contact": "stg_salesforce__contacts",
    "Lead": "stg_salesforce__leads",
    "Opportunity": "stg_salesforce__opportunities",
}
_SALESFORCE_COLUMNS = {
    "Account": {},
    "Contact": {},
    "Lead": {'"IsConverted"': "kept.is_converted"},
    "Opportunity": {'"IsWon"': "kept.is_won", '"IsClosed"': "kept.is_closed", '"Amount"': "kept.amount"},
}
# What "live" is decided on, per raw table.
_LATEST = {
    "companies": _latest(
        "raw_hubspot.companies",
        "id",
        '"updatedAt"',
        "hubspot.companies",
        _Held("stg_hubspot__companies", "company_id", {"id": "kept.company_id", "archived": "false"}),
    ),
    "contacts": _latest(
        "raw_hubspot.contacts",
        "id",
        '"updatedAt"',
        "hubspot.contacts",
        _Held(
            "stg_hubspot__contacts",
            "contact_id",
            {"id": "kept.contact_id", "archived": "false", "properties_hs_merged_object_ids": "kept.merged_object_ids"},
        ),
    ),
    "deals": _latest(
        "raw_hubspot.deals",
        "id",
        '"updatedAt"',
        "hubspot.deals",
        _Held(
            "stg_hubspot__deals",
            "deal_id",
            {
                "id": "kept.deal_id",
                "archived": "false",
                '"updatedAt"': "kept.updated_at",
                "properties_amount": "to_jsonb(kept.amount)",
                "properties_hs_is_closed_won": "kept.is_won",
                "properties_dealstage": "kept.deal_stage",
            },
        ),
    ),
    "deals_archived": _latest(
        "raw_hubspot.deals_archived",
        "id",
        '"archivedAt"',
        "hubspot.deals_archived",
        _Held("stg_hubspot__archived_deals", "deal_id", {"id": "kept.deal_id", '"archivedAt"': "kept.archived_at"}),
    ),
    "engagements": _latest("raw_hubspot.engagements", "id", '"lastUpdated"', "hubspot.engagements"),
    "Task": _latest(
        'raw_salesforce."Task"',
        '"Id"',
        '"SystemModstamp"',
        "salesforce.Task",
        _Held("stg_salesforce__tasks", "task_id", {'"Id"': "kept.task_id", '"IsDeleted"': "false"}),
    ),
    **{
        stream: _latest(
            f'raw_salesforce."{stream}"',
            '"Id"',
            '"SystemModstamp"',
            f"salesforce.{stream}",
            _Held(
                _SALESFORCE_MODELS[stream],
                _SALESFORCE_KEYS[stream],
                {'"Id"': f"kept.{_SALESFORCE_KEYS[stream]}", '"IsDeleted"': "false", **_SALESFORCE_COLUMNS[stream]},
            ),
        )
        for stream in ("Account", "Contact", "Lead", "Opportunity")
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
    "select stage ->> 'stageId' from /*raw:hubspot.deal_pipelines*/raw_hubspot.deal_pipelines as raw_rows"
    " cross join lateral jsonb_array_elements(raw_rows.stages) as stage"
    " where (stage -> 'metadata' ->> 'isClosed')::boolean and stage ->> 'stageId' is not null"
    " and not exists (select from crm_audit.quarantine as quarantined"
    " where quarantined.raw_id = raw_rows._airbyte_raw_id)"
    " and /*judged:hubspot.deal_pipelines*/true"
    " union select kept.stage_id from staging.stg_hubspot__deal_stages as kept where kept.is_closed"
    " and kept.pipeline_id::text in ("
    + _unread("raw_hubspot.deal_pipelines", '"pipelineId"', "hubspot.deal_pipelines")
    + ")"
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
    shapes = _contract_shapes(conn)

    def shaped(m: re.Match[str]) -> str:
        select, table = shapes.get(m.group(1)), m.group(2)
        return f"{table} as raw_rows" if select is None else f"(select {select} from {table} as raw_rows) as raw_rows"

    results = []
    for figure, raw_sql in RAW_FIGURES.items():
        sql = _RAW.sub(shaped, _JUDGED.sub(lambda m: judged.format(stream=m.group(1)), raw_sql))
        raw = conn.execute(sql).fetchone()[0]  # type: ignore[index]
        mart = conn.execute(MART_FIGURES[figure].format(marts=marts_schema)).fetchone()[0]  # type: ignore[index]
        results.append(Reconciliation(figure, Decimal(raw or 0), Decimal(mart or 0)))
    return results


def _contract_shapes(conn: psycopg.Connection) -> dict[str, str | None]:
    """Per stream, the select list reading its raw table in the contract's shape (None: it has that shape)."""
    specs = default_catalogue().streams
    present: dict[tuple[str, str], dict[str, str]] = {}
    for schema, table, column, data_type in conn.execute(
        "select table_schema, table_name, column_name, data_type from information_schema.columns"
        " where table_schema = any(%s) order by table_schema, table_name, ordinal_position",
        (sorted({spec.raw_schema for spec in specs}),),
    ):
        present.setdefault((schema, table), {})[column] = data_type
    return {
        spec.key: contract_select(spec.columns, present.get((spec.raw_schema, spec.stream), {}), "raw_rows")
        for spec in specs
    }


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
