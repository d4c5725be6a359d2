{{ config(meta={'last_judged': {'stream': 'hubspot.deals', 'raw_key': 'id', 'key': 'deal_id'}}) }}

with

source as (
    {{ gated_source('hubspot', 'deals') }}
),

renamed as (
    select
        id as deal_id,
        properties_dealname as deal_name,
        {{ json_number('properties_amount') }} as amount,
        properties_dealstage as deal_stage,
        properties_pipeline as pipeline_id,
        properties_closedate as close_date,
        coalesce(properties_hs_is_closed_won, false) as is_won,
        properties_hubspot_owner_id as owner_id,
        {{ primary_association('companies') }} as company_id,
        {{ primary_association('contacts') }} as contact_id,
        coalesce(archived, false) as is_archived,
        "createdAt" as created_at,
        "updatedAt" as updated_at,
        _airbyte_extracted_at as extracted_at
    from source
),

latest as (
    {{ deduplicate('renamed', 'deal_id', 'updated_at desc nulls last, extracted_at desc') }}
)

select
    deal_id,
    deal_name,
    amount,
    deal_stage,
    pipeline_id,
    close_date,
    is_won,
    owner_id,
    company_id,
    contact_id,
    created_at,
    updated_at,
    extracted_at
from latest
where not is_archived
