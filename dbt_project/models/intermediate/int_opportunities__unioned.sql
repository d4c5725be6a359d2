-- Deals (HubSpot) and opportunities (Salesforce) in one vocabulary, linked to resolved accounts and owners.
-- stage_category is the CRM-agnostic state: open, won or lost, from each CRM's own stage definitions (HubSpot's
-- pipelines, Salesforce's IsClosed and IsWon), never from a list of stage names.
with

hubspot as (
    select
        'hubspot' as source_system,
        deals.deal_id as source_opportunity_id,
        deals.deal_name as opportunity_name,
        deals.amount,
        deals.deal_stage as stage_name,
        pipeline_stages.display_order as stage_order,
        -- closed: HubSpot's won flag, or a stage its pipeline marks closed (a custom lost stage too)
        deals.is_won or coalesce(pipeline_stages.is_closed, false) as is_closed,
        deals.is_won,
        deals.close_date::date as close_date,
        deals.company_id as source_account_id,
        deals.owner_id as source_owner_id,
        coalesce(contact_merges.surviving_contact_id, deals.contact_id) as source_contact_id,
        deals.created_at,
        deals.updated_at,
        deals.extracted_at
    from {{ ref('stg_hubspot__deals') }} as deals
    left join {{ ref('stg_hubspot__contact_merges') }} as contact_merges
        on deals.contact_id = contact_merges.merged_contact_id
    left join {{ ref('stg_hubspot__deal_stages') }} as pipeline_stages
        on deals.pipeline_id = pipeline_stages.pipeline_id and deals.deal_stage = pipeline_stages.stage_id
    -- archived in HubSpot (its recycle bin), unless restored since: a restored deal changes after its archival
    left join {{ ref('stg_hubspot__archived_deals') }} as archived
        on deals.deal_id = archived.deal_id
    where archived.deal_id is null or deals.updated_at > archived.archived_at
),

salesforce as (
    select
        'salesforce' as source_system,
        opportunity_id as source_opportunity_id,
        opportunity_name,
        amount,
        stage_name,
        null::integer as stage_order,
        is_closed,
        is_won,
        close_date,
        account_id as source_account_id,
        owner_id as source_owner_id,
        null::text as source_contact_id,
        created_at,
        updated_at,
        extracted_at
    from {{ ref('stg_salesforce__opportunities') }}
),

unioned as (
    select * from hubspot
    union all
    select * from salesforce
)

select
    {{ opportunity_key('unioned') }} as opportunity_key,
    unioned.source_system,
    unioned.source_opportunity_id,
    unioned.opportunity_name,
    unioned.amount,
    unioned.stage_name,
    unioned.stage_order,
    case when unioned.is_won then 'won' when unioned.is_closed then 'lost' else 'open' end as stage_category,
    unioned.is_closed,
    unioned.is_won,
    unioned.close_date,
    resolved_accounts.account_key,
    owners.owner_key,
    people.contact_key,
    unioned.created_at,
    unioned.updated_at,
    unioned.extracted_at
from unioned
left join {{ ref('int_accounts__resolved') }} as resolved_accounts
    on
        unioned.source_system = resolved_accounts.source_system
        and unioned.source_account_id = resolved_accounts.source_account_id
left join {{ ref('int_owners__resolved') }} as owners
    on unioned.source_system = owners.source_system and unioned.source_owner_id = owners.source_owner_id
left join {{ ref('int_people__resolved') }} as people
    on
        unioned.source_system = people.source_system
        and people.record_type = 'contact'
        and unioned.source_contact_id = people.source_person_id
