-- Every live company or account record of both CRMs, in one vocabulary, source kept.
with

hubspot as (
    select
        'hubspot' as source_system,
        company_id as source_account_id,
        company_name as account_name,
        company_domain as account_domain,
        phone,
        industry,
        city,
        country,
        owner_id as source_owner_id,
        employee_count,
        annual_revenue,
        created_at,
        updated_at,
        extracted_at
    from {{ ref('stg_hubspot__companies') }}
),

salesforce as (
    select
        'salesforce' as source_system,
        account_id as source_account_id,
        account_name,
        account_domain,
        phone,
        industry,
        city,
        country,
        owner_id as source_owner_id,
        employee_count,
        annual_revenue,
        created_at,
        updated_at,
        extracted_at
    from {{ ref('stg_salesforce__accounts') }}
)

select * from hubspot
union all
select * from salesforce
