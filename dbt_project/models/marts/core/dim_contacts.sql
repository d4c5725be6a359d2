-- One row per real-world person across both CRMs (customer 360): both CRMs' records of them, their account and
-- owner, lifecycle stage, first and last touch, and the deals they are on.
with

people as (
    select * from {{ ref('int_people__resolved') }}
),

-- The most recently updated record speaks for the person's name, phone, account and owner.
latest as (
    select distinct on (contact_key)
        contact_key,
        email,
        first_name,
        last_name,
        phone,
        account_key,
        owner_key
    from people
    order by contact_key asc, updated_at desc nulls last, source_system asc, source_person_id asc
),

per_person as (
    select
        contact_key,
        min(source_person_id) filter (where source_system = 'hubspot') as hubspot_contact_id,
        count(*) filter (where source_system = 'hubspot') as hubspot_record_count,
        min(source_person_id) filter (
            where source_system = 'salesforce' and record_type = 'contact'
        ) as salesforce_contact_id,
        min(source_person_id) filter (
            where source_system = 'salesforce' and record_type = 'lead'
        ) as salesforce_lead_id,
        count(*) as source_record_count,
        bool_or(source_system = 'hubspot') as is_in_hubspot,
        bool_or(source_system = 'salesforce') as is_in_salesforce,
        min(created_at) as first_created_at,
        max(updated_at) as last_updated_at
    from people
    group by contact_key
),

hubspot_stage as (
    select distinct on (contact_key)
        contact_key,
        lifecycle_stage
    from people
    where source_system = 'hubspot' and lifecycle_stage is not null
    order by contact_key asc, updated_at desc nulls last
),

touches as (
    select
        contact_key,
        min(occurred_at) as first_touch_at,
        max(occurred_at) as last_touch_at,
        count(*) as activity_count
    from {{ ref('int_activities__unioned') }}
    where contact_key is not null
    group by contact_key
),

deals as (
    select
        contact_key,
        count(*) filter (where stage_category = 'open') as open_deal_count,
        coalesce(sum(amount) filter (where stage_category = 'won'), 0) as won_amount
    from {{ ref('int_opportunities__unioned') }}
    where contact_key is not null
    group by contact_key
),

accounts as (
    select
        account_key,
        account_name,
        open_opportunity_count,
        won_amount
    from {{ ref('dim_accounts') }}
)

select
    latest.contact_key,
    -- Personal data, treated as the catalogue says (pii macro): analysts join and count on the hashed email.
    {{ pii(
        'latest.email',
        'hubspot.contacts.properties_email', 'salesforce.Contact.Email', 'salesforce.Lead.Email'
    ) }} as email,
    {{ pii(
        'latest.first_name',
        'hubspot.contacts.properties_firstname', 'salesforce.Contact.FirstName', 'salesforce.Lead.FirstName'
    ) }} as first_name,
    {{ pii(
        'latest.last_name',
        'hubspot.contacts.properties_lastname', 'salesforce.Contact.LastName', 'salesforce.Lead.LastName'
    ) }} as last_name,
    {{ pii(
        'latest.phone',
        'hubspot.contacts.properties_phone', 'salesforce.Contact.Phone', 'salesforce.Lead.Phone'
    ) }} as phone,
    latest.account_key,
    accounts.account_name,
    latest.owner_key,
    -- HubSpot's lifecycle stage where HubSpot knows the person; else derived from Salesforce: a lead, or a
    -- contact whose account has won (customer) or has open opportunities (opportunity).
    coalesce(
        hubspot_stage.lifecycle_stage,
        case
            when per_person.salesforce_contact_id is null then 'lead'
            when accounts.won_amount > 0 then 'customer'
            when accounts.open_opportunity_count > 0 then 'opportunity'
            else 'salesqualifiedlead'
        end
    ) as lifecycle_stage,
    per_person.hubspot_contact_id,
    per_person.hubspot_record_count,
    per_person.salesforce_contact_id,
    per_person.salesforce_lead_id,
    per_person.is_in_hubspot,
    per_person.is_in_salesforce,
    per_person.source_record_count,
    touches.first_touch_at,
    touches.last_touch_at,
    coalesce(touches.activity_count, 0) as activity_count,
    coalesce(deals.open_deal_count, 0) as open_deal_count,
    coalesce(deals.won_amount, 0) as won_amount,
    per_person.first_created_at,
    per_person.last_updated_at
from latest
inner join per_person on latest.contact_key = per_person.contact_key
left join hubspot_stage on latest.contact_key = hubspot_stage.contact_key
left join touches on latest.contact_key = touches.contact_key
left join deals on latest.contact_key = deals.contact_key
left join accounts on latest.account_key = accounts.account_key
