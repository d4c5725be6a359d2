{#- Lower-case and trim an email; empty strings become null so they never match across CRMs. -#}
{% macro normalize_email(column) -%}
    nullif(lower(trim({{ column }})), '')
{%- endmacro %}
