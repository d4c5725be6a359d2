{{
    config(
        materialized='incremental',
        unique_key='opportunity_key',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        post_hook=[
            "delete from {{ this }} as history where not exists (select from"
            ~ " {{ ref('stg_salesforce__opportunity_history') }} as live where history.source_system = 'salesforce'"
            ~ " and live.opportunity_id = history.source_opportunity_id) and not exists (select from"
            ~ " {{ ref('snp_hubspot__deals') }} as snapshot where history.source_system = 'hubspot'"
            ~ " and snapshot.deal_id = history.source_opportunity_id)"
        ]
    )
}}

-- Every stage an opportunity entered, when, and when it left (null while it is still there). Salesforce's
-- OpportunityHistory records each change; HubSpot's come from the deals snapshot. Consecutive versions in the
-- same stage (an amount or date change) are one stay. Incremental: every run computes all stays (window functions
-- over the versions, cheap next to writing them) and replaces, by opportunity_key, only the opportunities whose
-- computed rows differ from the stored ones; the post-hook removes those gone from the source. Late and duplicate
-- history rows land exactly as a full refresh places them, whenever their load commits (a watermark on load time
-- would miss a load that commits after a later one was transformed).
with

salesforce as (
    select
        'salesforce' as source_system,
        opportunity_id as source_opportunity_id,
        stage_name,
        changed_at,
        amount,
        extracted_at
    from {{ ref('stg_salesforce__opportunity_history') }}
),

hubspot as (
    select
        'hubspot' as source_system,
        deal_id as source_opportunity_id,
        deal_stage as stage_name,
        dbt_valid_from as changed_at,
        amount,
        extracted_at
    from {{ ref('snp_hubspot__deals') }}
),

versions as (
    select * from salesforce
    union all
    select * from hubspot
),

ordered as (
    select
        *,
        lag(stage_name) over (
            partition by source_system, source_opportunity_id order by changed_at, stage_name
        ) as previous_stage
    from versions
),

entries as (
    select
        source_system,
        source_opportunity_id,
        stage_name,
        changed_at as entered_at,
        amount as amount_on_entry,
        max(extracted_at) over (partition by source_system, source_opportunity_id) as loaded_at
    from ordered
    where previous_stage is null or previous_stage <> stage_name
),

stays as (
    select
        *,
        lead(entered_at) over (partition by source_system, source_opportunity_id order by entered_at) as exited_at,
        row_number() over (partition by source_system, source_opportunity_id order by entered_at) as stage_sequence
    from entries
),

computed as (
    select
        md5(source_system || ':' || source_opportunity_id || ':' || stage_sequence) as stage_entry_key,
        {{ opportunity_key() }} as opportunity_key,
        source_system,
        source_opportunity_id,
        stage_sequence,
        stage_name,
        entered_at,
        exited_at,
        round(extract(epoch from exited_at - entered_at) / 86400.0, 2) as days_in_stage,
        exited_at is null as is_current,
        amount_on_entry,
        loaded_at
    from stays
)

select computed.*
from computed
{% if is_incremental() %}
    where computed.opportunity_key in (
        select coalesce(fresh.opportunity_key, built.opportunity_key)
        from computed as fresh
        full outer join {{ this }} as built on fresh.stage_entry_key = built.stage_entry_key
        where fresh.stage_entry_key is null or built.stage_entry_key is null or fresh is distinct from built
    )
{% endif %}
