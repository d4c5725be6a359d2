-- One row per sales rep across both CRMs: the HubSpot owner and Salesforce user of the same person are one.
with

owners as (
    select * from {{ ref('int_owners__resolved') }}
),

latest as (
    select distinct on (owner_key)
        owner_key,
        email,
        first_name,
        last_name
    from owners
    order by owner_key asc, updated_at desc nulls last, source_system asc
)

select
    latest.owner_key,
    {{ pii('latest.email', 'hubspot.owners.email', 'salesforce.User.Email') }} as email,
    {{ pii('latest.first_name', 'hubspot.owners.firstName', 'salesforce.User.FirstName') }} as first_name,
    {{ pii('latest.last_name', 'hubspot.owners.lastName', 'salesforce.User.LastName') }} as last_name,
    min(owners.source_owner_id) filter (where owners.source_system = 'hubspot') as hubspot_owner_id,
    min(owners.source_owner_id) filter (where owners.source_system = 'salesforce') as salesforce_user_id,
    bool_or(owners.is_active) as is_active
from latest
inner join owners on latest.owner_key = owners.owner_key
group by latest.owner_key, latest.email, latest.first_name, latest.last_name
