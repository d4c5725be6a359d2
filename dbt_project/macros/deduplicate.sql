{#- The latest row per key of a relation or CTE: Airbyte delivers at least once, and append streams keep every
    version, so staging keeps one row per primary key, the newest by cursor and then by extraction time.
    DISTINCT ON rather than row_number() = 1: PostgreSQL estimates its output from the key's distinct count, where
    a filtered window gets a guess of a fraction of a percent that sends every join above it into nested loops. -#}
{% macro deduplicate(relation, partition_by, order_by) -%}
    select distinct on ({{ partition_by }}) *
    from {{ relation }}
    order by {{ partition_by }}, {{ order_by }}
{%- endmacro %}
