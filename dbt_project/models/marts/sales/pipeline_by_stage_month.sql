-- Open and closed pipeline per source, stage and month the opportunity was created: counts and amounts.
select
    created_month,
    source_system,
    stage_category,
    stage_name,
    count(*) as opportunity_count,
    coalesce(sum(amount), 0) as total_amount
from {{ ref('fct_opportunities') }}
group by created_month, source_system, stage_category, stage_name
