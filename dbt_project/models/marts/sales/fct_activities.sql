{{
    config(
        materialized='incremental',
        unique_key='activity_key',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[{'columns': ['activity_key'], 'unique': true}],
        post_hook=[
            "delete from {{ this }} as activities where not exists (select from"
            ~ " {{ ref('int_activities__unioned') }} as live where live.activity_key = activities.activity_key)"
        ]
    )
}}

-- One row per activity (HubSpot engagement, Salesforce task) with the person, account, owner and opportunity it
-- touches. Incremental: a run replaces, by activity_key, the activities whose row differs in any column from what
-- the current intermediate gives (new ones included), and the post-hook removes those gone from the source. A
-- content diff rather than a watermark on changed_at: a watermark misses rows whose load committed after a later
-- load was transformed, and links that move without a reload (an account re-resolved because another CRM's record
-- changed). Both sides are tables, so the diff is one hash join.
{% set compared = [
    'source_system', 'source_activity_id', 'activity_type', 'occurred_at', 'subject', 'status', 'duration_seconds',
    'owner_key', 'contact_key', 'account_key', 'opportunity_key', 'updated_at', 'changed_at'
] %}
with

activities as (
    select * from {{ ref('int_activities__unioned') }}
)

select
    activities.activity_key,
    activities.source_system,
    activities.source_activity_id,
    activities.activity_type,
    activities.occurred_at,
    date_trunc('month', activities.occurred_at)::date as occurred_month,
    activities.subject,
    activities.status,
    activities.duration_seconds,
    activities.owner_key,
    activities.contact_key,
    activities.account_key,
    activities.opportunity_key,
    activities.updated_at,
    activities.changed_at
from activities
{% if is_incremental() %}
    left join {{ this }} as built on activities.activity_key = built.activity_key
    where
        built.activity_key is null
        or (activities.{{ compared | join(', activities.') }})
        is distinct from (built.{{ compared | join(', built.') }})
{% endif %}
