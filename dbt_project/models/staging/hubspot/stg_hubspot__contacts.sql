{{ config(meta={'last_judged': {'stream': 'hubspot.contacts', 'raw_key': 'id', 'key': 'contact_id'}}) }}

with

source as (
    {{ gated_source('hubspot', 'contacts') }}
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
        properties_hs_merged_object_ids as merged_object_ids,
        coalesce(archived, false) as is_archived,
        "createdAt" as created_at,
        "updatedAt" as updated_at,
        _airbyte_extracted_at as extracted_at
    from source
),

latest as (
    {{ deduplicate('renamed', 'contact_id', 'updated_at desc nulls last, extracted_at desc') }}
),

-- A merge leaves the merged-away contact's last row in the raw table; the survivor lists its id. A survivor kept at
-- its last judged version (macros/last_judged.sql) still merges what its list names.
survivors as (
    select latest.merged_object_ids
    from latest
    where not latest.is_archived
    {{ last_judged_union('hubspot.contacts', 'id', 'contact_id', 'merged_object_ids') }}
),

merged_away as (
    select distinct trim(merged.merged_id) as contact_id
    from survivors
    cross join lateral unnest(string_to_array(survivors.merged_object_ids, ';')) as merged (merged_id)
)

select
    latest.contact_id,
    latest.email,
    latest.first_name,
    latest.last_name,
    latest.phone,
    latest.lifecycle_stage,
    latest.owner_id,
    latest.company_id,
    latest.merged_object_ids,
    latest.created_at,
    latest.updated_at,
    latest.extracted_at
from latest
where
    not latest.is_archived
    and not exists (
        select from merged_away
        where merged_away.contact_id = latest.contact_id
    )
