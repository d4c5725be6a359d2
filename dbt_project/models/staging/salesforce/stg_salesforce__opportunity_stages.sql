{{ config(meta={'last_judged': {'stream': 'salesforce.OpportunityStage', 'raw_key': '"Id"', 'key': 'stage_id'}}) }}

-- The org's own stage picklist: an opportunity's StageName is one of these values' ApiName, custom ones included.
with

source as (
    {{ gated_source('salesforce', 'OpportunityStage') }}
),

renamed as (
    select
        "Id" as stage_id,
        "ApiName" as stage_name,
        "MasterLabel" as stage_label,
        coalesce("IsActive", false) as is_active,
        coalesce("IsClosed", false) as is_closed,
        coalesce("IsWon", false) as is_won,
        "SortOrder" as sort_order,
        "DefaultProbability" as default_probability,
        "ForecastCategoryName" as forecast_category,
        "SystemModstamp" as updated_at,
        _airbyte_extracted_at as extracted_at
    from source
),

latest as (
    {{ deduplicate('renamed', 'stage_id', 'updated_at desc nulls last, extracted_at desc') }}
)

select
    stage_id,
    stage_name,
    stage_label,
    is_active,
    is_closed,
    is_won,
    sort_order,
    default_probability,
    forecast_category,
    updated_at,
    extracted_at
from latest
