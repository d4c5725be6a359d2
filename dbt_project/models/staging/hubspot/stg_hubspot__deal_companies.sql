{{ config(meta={'last_judged': {'stream': 'hubspot.deals', 'raw_key': 'id', 'key': 'deal_id'}}) }}

-- Every company a live deal is associated with, once (HubSpot repeats an id per association type), the primary
-- one (macro primary_association, stg_hubspot__deals.company_id) marked: a bridge's rows.
with

source as (
    {{ gated_source('hubspot', 'deals') }}
),

latest as (
    {{ deduplicate('source', 'id', '"updatedAt" desc nulls last, _airbyte_extracted_at desc') }}
)

select distinct
    latest.id as deal_id,
    associated.company_id,
    associated.company_id = {{ primary_association('latest.companies') }} as is_primary
from latest
cross join lateral jsonb_array_elements_text(latest.companies) as associated (company_id)
where not coalesce(latest.archived, false)
