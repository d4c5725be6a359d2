-- Opportunity to account, one row per pair: a HubSpot deal associated with several companies has a row for each;
-- fct_opportunities.account_key is the primary one.
select
    opportunity_key,
    account_key,
    is_primary
from {{ ref('int_opportunities__accounts') }}
