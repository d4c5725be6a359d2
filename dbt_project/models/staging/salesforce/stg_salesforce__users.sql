{{ config(meta={'last_judged': {'stream': 'salesforce.User', 'raw_key': '"Id"', 'key': 'user_id'}}) }}

with

source as (
    {{ gated_source('salesforce', 'User') }}
),

renamed as (
    select
        "Id" as user_id,
        {{ normalize_email('"Email"') }} as email,
        trim("FirstName") as first_name,
        trim("LastName") as last_name,
        "Username" as username,
        coalesce("IsActive", false) as is_active,
        "CreatedDate" as created_at,
        "SystemModstamp" as updated_at,
        _airbyte_extracted_at as extracted_at
    from source
),

latest as (
    {{ deduplicate('renamed', 'user_id', 'updated_at desc nulls last, extracted_at desc') }}
)

select
    user_id,
    email,
    first_name,
    last_name,
    username,
    is_active,
    created_at,
    updated_at,
    extracted_at
from latest
