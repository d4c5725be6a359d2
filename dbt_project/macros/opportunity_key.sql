{#- An opportunity's key: stable across runs and rebuilds, the same wherever a model refers to the opportunity
    (``relation``: the alias its columns are read from, if any). -#}
{% macro opportunity_key(relation=none) -%}
    {%- set prefix = relation ~ '.' if relation else '' -%}
    md5({{ prefix }}source_system || ':' || {{ prefix }}source_opportunity_id)
{%- endmacro %}
