{{
    config(
        materialized='incremental',
        unique_key='activity_key',
        incremental_strategy='delete+insert',
        on_schema_change='fail',
        indexes=[{'columns': ['activity_key'], 'unique': true}, {'columns': ['changed_at']}],
        post_hook=[
            "delete from {{ this }} as activities where not exists (select from"
            ~ " {{ ref('int_activities__unioned') }} as live where live.activity_key = activities.activity_key)"
        ]
    )
}}

-- depends_on: {{ ref('int_people__resolved') }}
-- depends_on: {{ ref('int_accounts__resolved') }}
-- depends_on: {{ ref('int_owners__resolved') }}
-- depends_on: {{ ref('int_opportunities__unioned') }}

-- One row per activity (HubSpot engagement, Salesforce task) with the person, account, owner and opportunity it
-- touches. Incremental: a run takes the activities whose own row or any linked record was loaded since the last
-- run (changed_at), or whose linked record is gone, and replaces them by activity_key; activities deleted at the
-- source are removed after.
with

activities as (
    select * from {{ ref('int_activities__unioned') }}
){% if is_incremental() %},

-- The activities to rebuild, as a key set joined below: those loaded again, or linked to a record loaded again,
-- since the last run; and those whose stored link no longer resolves (a linked record deleted at the source leaves
-- no newer load behind). Every test is a hash join: an OR of a watermark and an IN list, or NOT EXISTS under an
-- OR, is planned as a per-row subplan, quadratic at scale M.
people as (select distinct contact_key from {{ ref('int_people__resolved') }}),

accounts_resolved as (select distinct account_key from {{ ref('int_accounts__resolved') }}),

owners as (select distinct owner_key from {{ ref('int_owners__resolved') }}),

opportunities as (select opportunity_key from {{ ref('int_opportunities__unioned') }}),

to_rebuild as (
    select activities.activity_key
    from activities
    where activities.changed_at > (select coalesce(max(this.changed_at), '-infinity') from {{ this }} as this)
    union
    select stale.activity_key
    from {{ this }} as stale
    left join people on stale.contact_key = people.contact_key
    left join accounts_resolved on stale.account_key = accounts_resolved.account_key
    left join owners on stale.owner_key = owners.owner_key
    left join opportunities on stale.opportunity_key = opportunities.opportunity_key
    where
        (stale.contact_key is not null and people.contact_key is null)
        or (stale.account_key is not null and accounts_resolved.account_key is null)
        or (stale.owner_key is not null and owners.owner_key is null)
        or (stale.opportunity_key is not null and opportunities.opportunity_key is null)
){% endif %}

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
    inner join to_rebuild on activities.activity_key = to_rebuild.activity_key
{% endif %}
