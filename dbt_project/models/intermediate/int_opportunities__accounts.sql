-- Every account an opportunity is associated with: a HubSpot deal lists any number of companies (the connector's
-- association array, primary by our rule: macro primary_association), a Salesforce opportunity has one AccountId.
-- Company ids that resolve to no account record (not synced yet) are left out; two that resolve to one account
-- make one row.
with

hubspot as (
    select
        'hubspot' as source_system,
        deal_id as source_opportunity_id,
        company_id as source_account_id,
        is_primary
    from {{ ref('stg_hubspot__deal_companies') }}
),

salesforce as (
    select
        'salesforce' as source_system,
        opportunity_id as source_opportunity_id,
        account_id as source_account_id,
        true as is_primary
    from {{ ref('stg_salesforce__opportunities') }}
    where account_id is not null
),

unioned as (
    select * from hubspot
    union all
    select * from salesforce
)

select
    {{ opportunity_key('unioned') }} as opportunity_key,
    resolved_accounts.account_key,
    bool_or(unioned.is_primary) as is_primary
from unioned
inner join {{ ref('int_accounts__resolved') }} as resolved_accounts
    on
        unioned.source_system = resolved_accounts.source_system
        and unioned.source_account_id = resolved_accounts.source_account_id
-- the opportunities the pipeline holds (not an archived deal)
inner join {{ ref('int_opportunities__unioned') }} as opportunities
    on {{ opportunity_key('unioned') }} = opportunities.opportunity_key
group by 1, 2
