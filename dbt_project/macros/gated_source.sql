{#- A raw table without the rows its raw gate quarantined (crm_audit.quarantine, by _airbyte_raw_id): staging
    reads every source through this, so a rejected row never reaches a mart while the raw table keeps it as the
    connector wrote it. The quarantine table is looked up rather than declared as a source so that unit tests need
    no mock for it; a warehouse where no gate has run yet has no table and nothing to leave out. -#}
{% macro gated_source(source_name, table_name) -%}
    {%- set quarantine = adapter.get_relation(database=target.database, schema='crm_audit', identifier='quarantine')
        if execute else none -%}
    select raw_rows.*
    from {{ source(source_name, table_name) }} as raw_rows
    {%- if quarantine is not none %}
        where not exists (
            select from {{ quarantine }} as quarantined
            where quarantined.raw_id = raw_rows._airbyte_raw_id
        )
    {%- endif %}
{%- endmacro %}
