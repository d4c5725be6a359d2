-- One row per deal (HubSpot) or opportunity (Salesforce), with its account, owner and contact resolved.
select
    opportunity_key,
    source_system,
    source_opportunity_id,
    opportunity_name,
    account_key,
    owner_key,
    contact_key,
    amount,
    stage_name,
    stage_category,
    is_closed,
    is_won,
    close_date,
    created_at,
    date_trunc('month', created_at)::date as created_month,
    case when is_closed then close_date - created_at::date end as sales_cycle_days,
    updated_at
from {{ ref('int_opportunities__unioned') }}
