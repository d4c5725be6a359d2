{{ config(meta={'last_judged': {'stream': 'salesforce.Opportunity', 'raw_key': '"Id"', 'key': 'opportunity_id'}}) }}

with

source as (
    {{ gated_source('salesforce', 'Opportunity') }}
),

renamed as (
    select
        "Id" as opportunity_id,
        "AccountId" as account_id,
        "OwnerId" as owner_id,
        "Name" as opportunity_name,
        "Amount" as amount,
        "StageName" as stage_name,
        "Probability" as probability,
        "CloseDate" as close_date,
        coalesce("IsClosed", false) as is_closed,
        coalesce("IsWon", false) as is_won,
        "ForecastCategoryName" as forecast_category,
        "Type" as opportunity_type,
        "LeadSource" as lead_source,
        coalesce("IsDeleted", false) as is_deleted,
        "CreatedDate" as created_at,
        "SystemModstamp" as updated_at,
        _airbyte_extracted_at as extracted_at
    from source
),

latest as (
    {{ deduplicate('renamed', 'opportunity_id', 'updated_at desc nulls last, extracted_at desc') }}
)

select
    opportunity_id,
    account_id,
    owner_id,
    opportunity_name,
    amount,
    stage_name,
    probability,
    close_date,
    is_closed,
    is_won,
    forecast_category,
    opportunity_type,
    lead_source,
    created_at,
    updated_at,
    extracted_at
from latest
where not is_deleted
