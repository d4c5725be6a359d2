with

source as (
    select * from {{ source('hubspot', 'contacts') }}
),

-- A merge leaves the merged-away contact's last row in the raw table; the survivor lists its id.
merged_away as (
    select distinct trim(merged_id) as contact_id
    from source
    cross join lateral unnest(string_to_array(properties_hs_merged_object_ids, ';')) as merged_id
),

renamed as (
    select
        id as contact_id,
        {{ normalize_email('properties_email') }} as email,
        trim(properties_firstname) as first_name,
        trim(properties_lastname) as last_name,
        {{ normalize_phone('properties_phone') }} as phone,
        properties_lifecyclestage as lifecycle_stage,
        properties_hubspot_owner_id as owner_id,
        companies ->> 0 as company_id,
        "createdAt" as created_at,
        "updatedAt" as updated_at,
        _airbyte_extracted_at as extracted_at
    from source
    where
        not coalesce(archived, false)
        and id not in (select merged_away.contact_id from merged_away)
),

deduplicated as (
    select
        *,
        row_number() over (partition by contact_id order by updated_at desc, extracted_at desc) as row_num
    from renamed
)

select
    contact_id,
    email,
    first_name,
    last_name,
    phone,
    lifecycle_stage,
    owner_id,
    company_id,
    created_at,
    updated_at
from deduplicated
where row_num = 1
