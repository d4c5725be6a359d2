-- HubSpot engagements and Salesforce tasks in one vocabulary, linked to resolved people, accounts, owners and
-- opportunities. Salesforce tasks point at a person through WhoId (a contact or lead id) and at an opportunity
-- through WhatId.
with

hubspot as (
    select
        'hubspot' as source_system,
        engagements.engagement_id as source_activity_id,
        engagements.engagement_type as activity_type,
        engagements.occurred_at,
        engagements.subject,
        engagements.status,
        engagements.duration_seconds,
        engagements.owner_id as source_owner_id,
        coalesce(contact_merges.surviving_contact_id, engagements.contact_id) as source_person_id,
        engagements.company_id as source_account_id,
        engagements.deal_id as source_opportunity_id,
        engagements.updated_at,
        engagements.extracted_at
    from {{ ref('stg_hubspot__engagements') }} as engagements
    left join {{ ref('stg_hubspot__contact_merges') }} as contact_merges
        on engagements.contact_id = contact_merges.merged_contact_id
),

salesforce as (
    select
        'salesforce' as source_system,
        task_id as source_activity_id,
        task_type as activity_type,
        created_at as occurred_at,
        subject,
        status,
        duration_seconds,
        owner_id as source_owner_id,
        who_id as source_person_id,
        account_id as source_account_id,
        case when what_id like '006%' then what_id end as source_opportunity_id,
        updated_at,
        extracted_at
    from {{ ref('stg_salesforce__tasks') }}
),

unioned as (
    select * from hubspot
    union all
    select * from salesforce
)

select
    md5(unioned.source_system || ':' || unioned.source_activity_id) as activity_key,
    unioned.source_system,
    unioned.source_activity_id,
    unioned.activity_type,
    unioned.occurred_at,
    unioned.subject,
    unioned.status,
    unioned.duration_seconds,
    owners.owner_key,
    people.contact_key,
    coalesce(resolved_accounts.account_key, opportunities.account_key) as account_key,
    opportunities.opportunity_key,
    unioned.updated_at,
    -- The last time anything this row is built from arrived: the incremental fact reprocesses a row when its
    -- activity or any record it links to was loaded again (greatest ignores nulls).
    greatest(
        unioned.extracted_at,
        owners.extracted_at,
        people.extracted_at,
        resolved_accounts.extracted_at,
        opportunities.extracted_at
    ) as changed_at
from unioned
left join {{ ref('int_owners__resolved') }} as owners
    on unioned.source_system = owners.source_system and unioned.source_owner_id = owners.source_owner_id
left join {{ ref('int_people__resolved') }} as people
    on unioned.source_system = people.source_system and unioned.source_person_id = people.source_person_id
left join {{ ref('int_accounts__resolved') }} as resolved_accounts
    on
        unioned.source_system = resolved_accounts.source_system
        and unioned.source_account_id = resolved_accounts.source_account_id
left join {{ ref('int_opportunities__unioned') }} as opportunities
    on
        unioned.source_system = opportunities.source_system
        and unioned.source_opportunity_id = opportunities.source_opportunity_id
