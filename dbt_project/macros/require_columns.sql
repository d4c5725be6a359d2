{#- Fail with a message naming the source table and the missing columns when a raw table lacks a column a staging
    model needs (a dropped source field, a connection refreshed without it). New raw columns are ignored: staging
    selects the columns it names. -#}
{% macro require_columns(relation, columns) -%}
    {%- if execute -%}
        {%- set present = adapter.get_columns_in_relation(relation) | map(attribute='name') | list -%}
        {%- set missing = [] -%}
        {%- for column in columns if column not in present -%}
            {%- do missing.append(column) -%}
        {%- endfor -%}
        {%- if missing -%}
            {{ exceptions.raise_compiler_error(
                relation.schema ~ "." ~ relation.identifier ~ " is missing the column(s) " ~ missing | join(", ")
                ~ " that " ~ model.name ~ " reads: the raw contract changed (see docs/raw-contract.md)"
            ) }}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}
