with

source as (
    select * from {{ source('hubspot', 'deals') }}
),

renamed as (
    select
        id as deal_id,
        properties_dealname as deal_name,
        {{ json_number('properties_amount') }} as amount,
        properties_dealstage as deal_stage,
        properties_pipeline as pipeline,
        properties_closedate as close_date,
        coalesce(properties_hs_is_closed_won, false) as is_won,
        properties_dealstage in ('closedwon', 'closedlost') as is_closed,
        properties_hubspot_owner_id as owner_id,
        companies ->> 0 as company_id,
        contacts ->> 0 as contact_id,
        "createdAt" as created_at,
        "updatedAt" as updated_at,
        _airbyte_extracted_at as extracted_at
    from source
    where not coalesce(archived, false)
),

deduplicated as (
    select
        *,
        row_number() over (partition by deal_id order by updated_at desc, extracted_at desc) as row_num
    from renamed
)

select
    deal_id,
    deal_name,
    amount,
    deal_stage,
    pipeline,
    close_date,
    is_won,
    is_closed,
    owner_id,
    company_id,
    contact_id,
    created_at,
    updated_at
from deduplicated
where row_num = 1
