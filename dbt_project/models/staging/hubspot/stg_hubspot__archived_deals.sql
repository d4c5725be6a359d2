{{ config(meta={'last_judged': {'stream': 'hubspot.deals_archived', 'raw_key': 'id', 'key': 'deal_id'}}) }}

-- Deals in HubSpot's recycle bin and when they went there. The deals stream stops emitting an archived deal, so its
-- last live row stays in raw: this is what takes it out of the pipeline. A deal restored from the bin comes back to
-- the deals stream with a later updatedAt, which wins (int_opportunities__unioned).
with

source as (
    {{ gated_source('hubspot', 'deals_archived') }}
),

latest as (
    {{ deduplicate('source', 'id', '"archivedAt" desc nulls last, _airbyte_extracted_at desc') }}
)

select
    id as deal_id,
    "archivedAt" as archived_at
from latest
where "archivedAt" is not null
