{{ config(meta={'last_judged': {'stream': 'hubspot.companies', 'raw_key': 'id', 'key': 'company_id'}}) }}

with

source as (
    {{ gated_source('hubspot', 'companies') }}
),

renamed as (
    select
        id as company_id,
        properties_name as company_name,
        {{ normalize_domain('properties_domain') }} as company_domain,
        {{ normalize_phone('properties_phone') }} as phone,
        properties_industry as industry,
        properties_city as city,
        properties_country as country,
        properties_hubspot_owner_id as owner_id,
        {{ json_number('properties_numberofemployees') }}::integer as employee_count,
        {{ json_number('properties_annualrevenue') }} as annual_revenue,
        coalesce(archived, false) as is_archived,
        "createdAt" as created_at,
        "updatedAt" as updated_at,
        _airbyte_extracted_at as extracted_at
    from source
),

latest as (
    {{ deduplicate('renamed', 'company_id', 'updated_at desc nulls last, extracted_at desc') }}
)

select
    company_id,
    company_name,
    company_domain,
    phone,
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
where not is_archived
