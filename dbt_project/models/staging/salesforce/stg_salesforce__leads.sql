{{ config(meta={'last_judged': {'stream': 'salesforce.Lead', 'raw_key': '"Id"', 'key': 'lead_id'}}) }}

with

source as (
    {{ gated_source('salesforce', 'Lead') }}
),

renamed as (
    select
        "Id" as lead_id,
        {{ normalize_email('"Email"') }} as email,
        trim("FirstName") as first_name,
        trim("LastName") as last_name,
        nullif("Company", '[not provided]') as company_name,
        {{ normalize_phone('"Phone"') }} as phone,
        "Status" as lead_status,
        "LeadSource" as lead_source,
        coalesce("IsConverted", false) as is_converted,
        "ConvertedAccountId" as converted_account_id,
        "ConvertedContactId" as converted_contact_id,
        "ConvertedOpportunityId" as converted_opportunity_id,
        "ConvertedDate" as converted_date,
        "OwnerId" as owner_id,
        coalesce("IsDeleted", false) as is_deleted,
        "CreatedDate" as created_at,
        "SystemModstamp" as updated_at,
        _airbyte_extracted_at as extracted_at
    from source
),

latest as (
    {{ deduplicate('renamed', 'lead_id', 'updated_at desc nulls last, extracted_at desc') }}
)

select
    lead_id,
    email,
    first_name,
    last_name,
    company_name,
    phone,
    lead_status,
    lead_source,
    is_converted,
    converted_account_id,
    converted_contact_id,
    converted_opportunity_id,
    converted_date,
    owner_id,
    created_at,
    updated_at,
    extracted_at
from latest
where not is_deleted
