-- Per sales rep: closed deals, win rate and average sales-cycle length across both CRMs.
with

closed as (
    select
        owner_key,
        count(*) as closed_count,
        count(*) filter (where is_won) as won_count,
        coalesce(sum(amount) filter (where is_won), 0) as won_amount,
        avg(sales_cycle_days) as avg_sales_cycle_days
    from {{ ref('fct_opportunities') }}
    where is_closed and owner_key is not null
    group by owner_key
),

open_pipeline as (
    select
        owner_key,
        count(*) as open_count,
        coalesce(sum(amount), 0) as open_amount
    from {{ ref('fct_opportunities') }}
    where not is_closed and owner_key is not null
    group by owner_key
)

select
    owners.owner_key,
    owners.email,
    owners.first_name,
    owners.last_name,
    coalesce(closed.closed_count, 0) as closed_count,
    coalesce(closed.won_count, 0) as won_count,
    coalesce(closed.won_amount, 0) as won_amount,
    round(closed.won_count::numeric / nullif(closed.closed_count, 0), 4) as win_rate,
    round(closed.avg_sales_cycle_days, 1) as avg_sales_cycle_days,
    coalesce(open_pipeline.open_count, 0) as open_count,
    coalesce(open_pipeline.open_amount, 0) as open_amount
from {{ ref('dim_owners') }} as owners
left join closed on owners.owner_key = closed.owner_key
left join open_pipeline on owners.owner_key = open_pipeline.owner_key
