with

source as (
    {{ gated_source('hubspot', 'engagements') }}
),

renamed as (
    select
        id::text as engagement_id,
        lower(type) as engagement_type,
        {{ epoch_ms_to_timestamp('"timestamp"') }} as occurred_at,
        "ownerId"::text as owner_id,
        "associations_contactIds" ->> 0 as contact_id,
        "associations_companyIds" ->> 0 as company_id,
        "associations_dealIds" ->> 0 as deal_id,
        metadata_subject as subject,
        metadata_status as status,
        "metadata_durationMilliseconds" / 1000 as duration_seconds,
        coalesce(active, true) as is_active,
        {{ epoch_ms_to_timestamp('"createdAt"') }} as created_at,
        {{ epoch_ms_to_timestamp('"lastUpdated"') }} as updated_at,
        _airbyte_extracted_at as extracted_at
    from source
),

-- Incremental append with an inclusive cursor: the same version arrives more than once; keep the newest.
latest as (
    {{ deduplicate('renamed', 'engagement_id', 'updated_at desc nulls last, extracted_at desc') }}
)

select
    engagement_id,
    engagement_type,
    occurred_at,
    owner_id,
    contact_id,
    company_id,
    deal_id,
    subject,
    status,
    duration_seconds,
    created_at,
    updated_at,
    extracted_at
from latest
where is_active
