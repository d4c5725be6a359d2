with

source as (
    {{ gated_source('salesforce', 'OpportunityHistory') }}
),

renamed as (
    select
        "Id" as history_id,
        "OpportunityId" as opportunity_id,
        "StageName" as stage_name,
        "Amount" as amount,
        "ExpectedRevenue" as expected_revenue,
        "CloseDate" as close_date,
        "Probability" as probability,
        "ForecastCategory" as forecast_category,
        coalesce("IsDeleted", false) as is_deleted,
        "CreatedDate" as changed_at,
        "SystemModstamp" as updated_at,
        _airbyte_extracted_at as extracted_at
    from source
),

-- Incremental append: a history row can arrive more than once (inclusive cursor); keep one per id.
latest as (
    {{ deduplicate('renamed', 'history_id', 'updated_at desc nulls last, extracted_at desc') }}
)

select
    history_id,
    opportunity_id,
    stage_name,
    amount,
    expected_revenue,
    close_date,
    probability,
    forecast_category,
    changed_at,
    extracted_at
from latest
where not is_deleted
