with

contacts as (
    select * from {{ ref('stg_hubspot__contacts') }}
),

companies as (
    select * from {{ ref('stg_hubspot__companies') }}
),

deals as (
    select * from {{ ref('stg_hubspot__deals') }}
),

deals_per_contact as (
    select
        contact_id,
        count(*) filter (where not is_closed) as open_deal_count,
        coalesce(sum(amount) filter (where is_won), 0) as won_amount
    from deals
    group by contact_id
)

select
    contacts.contact_id,
    contacts.email,
    contacts.first_name,
    contacts.last_name,
    contacts.phone,
    contacts.lifecycle_stage,
    contacts.owner_id,
    contacts.company_id,
    companies.company_name,
    companies.company_domain,
    coalesce(deals_per_contact.open_deal_count, 0) as open_deal_count,
    coalesce(deals_per_contact.won_amount, 0) as won_amount,
    contacts.created_at,
    contacts.updated_at
from contacts
left join companies on contacts.company_id = companies.company_id
left join deals_per_contact on contacts.contact_id = deals_per_contact.contact_id
