{#- A bare host name from a website or domain value: no scheme, no www., no path or port, lower case. -#}
{% macro normalize_domain(column) -%}
    nullif(
        regexp_replace(
            regexp_replace(lower(trim({{ column }})), '^[a-z]+://', ''),
            '^www\.|[:/?#].*$', '', 'g'
        ),
        ''
    )
{%- endmacro %}
