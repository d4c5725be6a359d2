-- Sales reps of both CRMs (HubSpot owners, Salesforce users), one owner_key per person by normalised email.
with

unioned as (
    select
        'hubspot' as source_system,
        owner_id as source_owner_id,
        email,
        first_name,
        last_name,
        is_active,
        updated_at,
        extracted_at
    from {{ ref('stg_hubspot__owners') }}
    union all
    select
        'salesforce' as source_system,
        user_id as source_owner_id,
        email,
        first_name,
        last_name,
        is_active,
        updated_at,
        extracted_at
    from {{ ref('stg_salesforce__users') }}
)

select
    {{ pii_key("case
            when email is not null then 'email:' || email
            else 'record:' || source_system || ':' || source_owner_id
        end") }} as owner_key,
    source_system,
    source_owner_id,
    email,
    first_name,
    last_name,
    is_active,
    updated_at,
    extracted_at
from unioned
