-- Activity per account and month, by type: how much attention each customer gets.
select
    activities.account_key,
    customer_accounts.account_name,
    activities.occurred_month,
    activities.activity_type,
    count(*) as activity_count,
    count(distinct activities.contact_key) as people_touched,
    max(activities.occurred_at) as last_activity_at
from {{ ref('fct_activities') }} as activities
inner join {{ ref('dim_accounts') }} as customer_accounts
    on activities.account_key = customer_accounts.account_key
group by activities.account_key, customer_accounts.account_name, activities.occurred_month, activities.activity_type
