-- One contact_key per real-world person: records with the same normalised email are one person (HubSpot
-- duplicates awaiting a merge, the Salesforce contact or lead of the same person). A record without an email
-- stands alone: names are too ambiguous to merge people on. The key is the email's keyed hash (pii_key), so it is
-- stable and cannot be recomputed from a guessed address.
select
    {{ pii_key("case
            when people.email is not null then 'email:' || people.email
            else 'record:' || people.source_system || ':' || people.record_type || ':' || people.source_person_id
        end") }} as contact_key,
    people.source_system,
    people.record_type,
    people.source_person_id,
    people.email,
    people.first_name,
    people.last_name,
    people.phone,
    people.lifecycle_stage,
    resolved_accounts.account_key,
    owners.owner_key,
    people.created_at,
    people.updated_at,
    people.extracted_at
from {{ ref('int_people__unioned') }} as people
left join {{ ref('int_accounts__resolved') }} as resolved_accounts
    on
        people.source_system = resolved_accounts.source_system
        and people.source_account_id = resolved_accounts.source_account_id
left join {{ ref('int_owners__resolved') }} as owners
    on
        people.source_system = owners.source_system
        and people.source_owner_id = owners.source_owner_id
