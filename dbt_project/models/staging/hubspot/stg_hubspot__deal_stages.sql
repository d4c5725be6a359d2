{{ config(meta={'last_judged': {
    'stream': 'hubspot.deal_pipelines', 'raw_key': '"pipelineId"', 'key': 'pipeline_id'}}) }}

with

source as (
    {{ gated_source('hubspot', 'deal_pipelines') }}
),

stages as (
    select
        source."pipelineId" as pipeline_id,
        source.label as pipeline_label,
        pipeline_stage ->> 'stageId' as stage_id,
        pipeline_stage ->> 'label' as stage_label,
        (pipeline_stage ->> 'displayOrder')::integer as display_order,
        (pipeline_stage -> 'metadata' ->> 'isClosed')::boolean as is_closed,
        (pipeline_stage -> 'metadata' ->> 'probability')::numeric as probability
    from source
    cross join lateral jsonb_array_elements(source.stages) as pipeline_stage
)

-- Full refresh: the table holds exactly the current pipelines, one row per pipeline.
select
    pipeline_id,
    pipeline_label,
    stage_id,
    stage_label,
    display_order,
    is_closed,
    probability
from stages
