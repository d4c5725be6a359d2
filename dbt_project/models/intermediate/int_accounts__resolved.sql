-- One account_key per real-world company: records with the same normalised domain are one account; a record
-- without a domain joins the account whose records carry its normalised name, when exactly one does, else it
-- stands alone under its name. The key is a hash of what matched, so it is stable from run to run.
with

accounts as (
    select
        *,
        {{ normalize_name('account_name') }} as matching_name
    from {{ ref('int_accounts__unioned') }}
),

domains_by_name as (
    select
        matching_name,
        min(account_domain) as account_domain
    from accounts
    where account_domain is not null and matching_name is not null
    group by matching_name
    having count(distinct account_domain) = 1
),

resolved as (
    select
        accounts.*,
        coalesce(accounts.account_domain, domains_by_name.account_domain) as resolved_domain,
        case
            when accounts.account_domain is not null then 'domain'
            when domains_by_name.account_domain is not null then 'name_to_domain'
            when accounts.matching_name is not null then 'name'
            else 'record'
        end as resolution_method
    from accounts
    left join domains_by_name
        on
            accounts.account_domain is null
            and accounts.matching_name = domains_by_name.matching_name
)

select
    md5(
        case
            when resolved_domain is not null then 'domain:' || resolved_domain
            when matching_name is not null then 'name:' || matching_name
            else 'record:' || source_system || ':' || source_account_id
        end
    ) as account_key,
    source_system,
    source_account_id,
    account_name,
    resolved_domain as account_domain,
    matching_name,
    resolution_method,
    phone,
    industry,
    city,
    country,
    source_owner_id,
    employee_count,
    annual_revenue,
    created_at,
    updated_at,
    extracted_at
from resolved
