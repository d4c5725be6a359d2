-- HubSpot merges: each merged-away contact id and the surviving contact that lists it. Activities and deals
-- recorded against a merged-away id belong to the survivor.
with

contacts as (
    select * from {{ ref('stg_hubspot__contacts') }}
),

merged as (
    select
        trim(merged.merged_id) as merged_contact_id,
        contacts.contact_id as surviving_contact_id
    from contacts
    cross join lateral unnest(string_to_array(contacts.merged_object_ids, ';')) as merged (merged_id)
)

select distinct
    merged_contact_id,
    surviving_contact_id
from merged
where merged_contact_id <> surviving_contact_id
