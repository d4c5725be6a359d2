{{ config(meta={'last_judged': {'stream': 'hubspot.owners', 'raw_key': 'id', 'key': 'owner_id'}}) }}

with

source as (
    {{ gated_source('hubspot', 'owners') }}
),

renamed as (
    select
        id as owner_id,
        {{ normalize_email('email') }} as email,
        trim("firstName") as first_name,
        trim("lastName") as last_name,
        "userId" as user_id,
        teams -> 0 ->> 'name' as team,
        not coalesce(archived, false) as is_active,
        "createdAt" as created_at,
        "updatedAt" as updated_at,
        _airbyte_extracted_at as extracted_at
    from source
),

latest as (
    {{ deduplicate('renamed', 'owner_id', 'updated_at desc nulls last, extracted_at desc') }}
)

-- Archived owners stay: deals and activities they owned still point at them.
select
    owner_id,
    email,
    first_name,
    last_name,
    user_id,
    team,
    is_active,
    created_at,
    updated_at,
    extracted_at
from latest
