{#- HubSpot number properties land as jsonb (a JSON number or a numeric string); cast them safely. -#}
{% macro json_number(column) -%}
    case
        when ({{ column }} #>> '{}') ~ '^\s*-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*$'
            then ({{ column }} #>> '{}')::numeric
    end
{%- endmacro %}
