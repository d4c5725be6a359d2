{{ config(meta={'last_judged': {'stream': 'salesforce.Task', 'raw_key': '"Id"', 'key': 'task_id'}}) }}

with

source as (
    {{ gated_source('salesforce', 'Task') }}
),

renamed as (
    select
        "Id" as task_id,
        lower(coalesce("TaskSubtype", 'task')) as task_type,
        "OwnerId" as owner_id,
        "WhoId" as who_id,
        "WhatId" as what_id,
        "AccountId" as account_id,
        "Subject" as subject,
        "Status" as status,
        "Priority" as priority,
        "ActivityDate" as activity_date,
        coalesce("IsClosed", false) as is_closed,
        "CallDurationInSeconds" as duration_seconds,
        coalesce("IsDeleted", false) as is_deleted,
        "CreatedDate" as created_at,
        "SystemModstamp" as updated_at,
        _airbyte_extracted_at as extracted_at
    from source
),

latest as (
    {{ deduplicate('renamed', 'task_id', 'updated_at desc nulls last, extracted_at desc') }}
)

select
    task_id,
    task_type,
    owner_id,
    who_id,
    what_id,
    account_id,
    subject,
    status,
    priority,
    activity_date,
    is_closed,
    duration_seconds,
    created_at,
    updated_at,
    extracted_at
from latest
where not is_deleted
