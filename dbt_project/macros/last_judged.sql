{#- A record's last judged version stays in staging while raw holds only a newer one no gate let through.

    Airbyte's destination replaces a record in place: a deduplicated stream's upsert overwrites its row, a full
    refresh swaps in a new table. Until a gate judges the new batch (or for good, when the gate quarantined the new
    row), gated_source reads nothing for that record. A staging model that declares
    ``meta: {last_judged: {stream: '<source>.<table>', raw_key: <raw column>, key: <its column>}}`` keeps, for every
    record whose raw rows are all unread that way, the rows the previous build of the model held for it. A record
    gone from raw (erased, or absent from a new full refresh that is read) is not kept.

    The staging project's pre-hook copies those rows from the model's table into a temporary table before dbt
    builds the new one; its post-hook adds them to the new table, converted to its columns by name
    (jsonb_populate_record: a column the model dropped is left out, a new one is null). The rows exist only in the
    model's own table: docs/decisions.md (#30) says why and what it costs. -#}

{% macro hold_last_judged() -%}
    {%- set holds = config.get('meta', {}).get('last_judged') if execute else none -%}
    {%- if holds is none -%}{{ return('') }}{%- endif -%}
    {%- set previous = adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier) -%}
    {%- set unread = unread_raw_keys(holds['stream'], holds['raw_key']) -%}
    {%- if previous is none or unread is none %}
        create temporary table {{ _held_table() }} on commit drop as select 1 as nothing where false
    {%- else %}
        create temporary table {{ _held_table() }} on commit drop as
        select previous.*
        from {{ previous }} as previous
        where previous.{{ holds['key'] }}::text in ({{ unread }})
    {%- endif %}
{%- endmacro %}

{#- The keys (as text) of a stream's raw rows that gated_source does not read; none when the raw table is
    missing. -#}
{% macro unread_raw_keys(stream, raw_key) -%}
    {%- set source_name, table_name = stream.split('.') -%}
    {%- set declared = source(source_name, table_name) -%}
    {%- set raw = adapter.get_relation(
        database=declared.database, schema=declared.schema, identifier=declared.identifier) if execute else none -%}
    {%- if raw is none -%}{{ return(none) }}{%- endif -%}
    {{ return('select raw_rows.' ~ raw_key ~ '::text from ' ~ raw ~ ' as raw_rows where not ('
        ~ judged_row(source_name, table_name, 'raw_rows') ~ ')') }}
{%- endmacro %}

{% macro restore_last_judged() -%}
    {%- set holds = config.get('meta', {}).get('last_judged') if execute else none -%}
    {%- if holds is none -%}{{ return('') }}{%- endif -%}
    {%- set relation = this.include(database=false) -%}
    insert into {{ relation }}
    select restored.*
    from {{ _held_table() }} as held
    cross join lateral jsonb_populate_record(null::{{ relation }}, to_jsonb(held)) as restored
    where not exists (
        select from {{ relation }} as fresh
        where fresh.{{ holds['key'] }}::text = to_jsonb(held) ->> '{{ holds['key'] }}'
    )
{%- endmacro %}

{#- ``union all`` the given columns of the rows a model's previous build kept for records it keeps, for a model
    whose own logic reads across records (a survivor's merge list): nothing where there is no previous build. -#}
{% macro last_judged_union(stream, raw_key, key, columns) -%}
    {%- set previous = adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier)
        if execute and model.resource_type != 'unit_test' else none -%}
    {%- set unread = unread_raw_keys(stream, raw_key) if previous is not none else none -%}
    {%- if unread is not none %}
        union all
        select {{ columns }}
        from {{ previous }}
        where {{ key }}::text in ({{ unread }})
    {%- endif %}
{%- endmacro %}

{% macro _held_table() -%}
    "held__{{ this.identifier }}"
{%- endmacro %}
