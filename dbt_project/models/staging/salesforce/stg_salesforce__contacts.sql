{{ config(meta={'last_judged': {'stream': 'salesforce.Contact', 'raw_key': '"Id"', 'key': 'contact_id'}}) }}

with

source as (
    {{ gated_source('salesforce', 'Contact') }}
),

renamed as (
    select
        "Id" as contact_id,
        "AccountId" as account_id,
        {{ normalize_email('"Email"') }} as email,
        trim("FirstName") as first_name,
        trim("LastName") as last_name,
        {{ normalize_phone('"Phone"') }} as phone,
        "Title" as title,
        "LeadSource" as lead_source,
        "OwnerId" as owner_id,
        coalesce("IsDeleted", false) as is_deleted,
        "CreatedDate" as created_at,
        "SystemModstamp" as updated_at,
        _airbyte_extracted_at as extracted_at
    from source
),

latest as (
    {{ deduplicate('renamed', 'contact_id', 'updated_at desc nulls last, extracted_at desc') }}
)

select
    contact_id,
    account_id,
    email,
    first_name,
    last_name,
    phone,
    title,
    lead_source,
    owner_id,
    created_at,
    updated_at,
    extracted_at
from latest
where not is_deleted
