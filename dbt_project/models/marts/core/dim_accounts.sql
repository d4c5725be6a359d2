-- One row per real-world company across both CRMs (customer 360 for accounts).
with

accounts as (
    select * from {{ ref('int_accounts__resolved') }}
),

owners as (
    select * from {{ ref('int_owners__resolved') }}
),

-- The record that speaks for the account: HubSpot's when the company is there (its names and domains are the
-- marketing team's clean copy), else the most recently updated Salesforce account.
preferred as (
    select distinct on (account_key)
        account_key,
        account_name,
        account_domain,
        industry,
        city,
        country,
        phone,
        employee_count,
        annual_revenue,
        source_system,
        source_owner_id
    from accounts
    order by account_key asc, source_system = 'hubspot' desc, updated_at desc nulls last, source_account_id asc
),

per_account as (
    select
        account_key,
        min(source_account_id) filter (where source_system = 'hubspot') as hubspot_company_id,
        min(source_account_id) filter (where source_system = 'salesforce') as salesforce_account_id,
        count(*) as source_record_count,
        bool_or(source_system = 'hubspot') as is_in_hubspot,
        bool_or(source_system = 'salesforce') as is_in_salesforce,
        min(resolution_method) as resolution_method,
        min(created_at) as first_created_at,
        max(updated_at) as last_updated_at
    from accounts
    group by account_key
),

opportunities as (
    select
        account_key,
        count(*) as opportunity_count,
        count(*) filter (where stage_category = 'open') as open_opportunity_count,
        coalesce(sum(amount) filter (where stage_category = 'open'), 0) as open_pipeline_amount,
        coalesce(sum(amount) filter (where stage_category = 'won'), 0) as won_amount
    from {{ ref('int_opportunities__unioned') }}
    where account_key is not null
    group by account_key
)

select
    preferred.account_key,
    preferred.account_name,
    preferred.account_domain,
    preferred.industry,
    preferred.city,
    preferred.country,
    {{ pii('preferred.phone', 'hubspot.companies.properties_phone', 'salesforce.Account.Phone') }} as phone,
    preferred.employee_count,
    preferred.annual_revenue,
    owners.owner_key,
    per_account.hubspot_company_id,
    per_account.salesforce_account_id,
    per_account.is_in_hubspot,
    per_account.is_in_salesforce,
    per_account.source_record_count,
    per_account.resolution_method,
    coalesce(opportunities.opportunity_count, 0) as opportunity_count,
    coalesce(opportunities.open_opportunity_count, 0) as open_opportunity_count,
    coalesce(opportunities.open_pipeline_amount, 0) as open_pipeline_amount,
    coalesce(opportunities.won_amount, 0) as won_amount,
    per_account.first_created_at,
    per_account.last_updated_at
from preferred
inner join per_account on preferred.account_key = per_account.account_key
left join owners
    on preferred.source_system = owners.source_system and preferred.source_owner_id = owners.source_owner_id
left join opportunities on preferred.account_key = opportunities.account_key
