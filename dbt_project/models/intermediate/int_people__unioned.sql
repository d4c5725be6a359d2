-- Every live person record of both CRMs: HubSpot contacts, Salesforce contacts, and Salesforce leads not yet
-- converted (a converted lead lives on as the contact it became).
with

hubspot_contacts as (
    select
        'hubspot' as source_system,
        'contact' as record_type,
        contact_id as source_person_id,
        email,
        first_name,
        last_name,
        phone,
        lifecycle_stage,
        company_id as source_account_id,
        owner_id as source_owner_id,
        created_at,
        updated_at,
        extracted_at
    from {{ ref('stg_hubspot__contacts') }}
),

salesforce_contacts as (
    select
        'salesforce' as source_system,
        'contact' as record_type,
        contact_id as source_person_id,
        email,
        first_name,
        last_name,
        phone,
        null::text as lifecycle_stage,
        account_id as source_account_id,
        owner_id as source_owner_id,
        created_at,
        updated_at,
        extracted_at
    from {{ ref('stg_salesforce__contacts') }}
),

salesforce_leads as (
    select
        'salesforce' as source_system,
        'lead' as record_type,
        lead_id as source_person_id,
        email,
        first_name,
        last_name,
        phone,
        'lead' as lifecycle_stage,
        null::text as source_account_id,
        owner_id as source_owner_id,
        created_at,
        updated_at,
        extracted_at
    from {{ ref('stg_salesforce__leads') }}
    where not is_converted
)

select * from hubspot_contacts
union all
select * from salesforce_contacts
union all
select * from salesforce_leads
