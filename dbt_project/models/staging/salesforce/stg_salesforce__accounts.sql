{{ config(meta={'last_judged': {'stream': 'salesforce.Account', 'raw_key': '"Id"', 'key': 'account_id'}}) }}

with

source as (
    {{ gated_source('salesforce', 'Account') }}
),

renamed as (
    select
        "Id" as account_id,
        "Name" as account_name,
        {{ normalize_domain('"Website"') }} as account_domain,
        {{ normalize_phone('"Phone"') }} as phone,
        "Type" as account_type,
        "Industry" as industry,
        "BillingCity" as city,
        "BillingCountry" as country,
        "OwnerId" as owner_id,
        "NumberOfEmployees" as employee_count,
        "AnnualRevenue" as annual_revenue,
        coalesce("IsDeleted", false) as is_deleted,
        "CreatedDate" as created_at,
        "SystemModstamp" as updated_at,
        _airbyte_extracted_at as extracted_at
    from source
),

latest as (
    {{ deduplicate('renamed', 'account_id', 'updated_at desc nulls last, extracted_at desc') }}
)

-- queryAll returns deleted records with IsDeleted = true; the newest version decides.
select
    account_id,
    account_name,
    account_domain,
    phone,
    account_type,
    industry,
    city,
    country,
    owner_id,
    employee_count,
    annual_revenue,
    created_at,
    updated_at,
    extracted_at
from latest
where not is_deleted
