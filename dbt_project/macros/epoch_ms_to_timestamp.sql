{#- HubSpot's legacy engagements API gives times as epoch milliseconds (integers). -#}
{% macro epoch_ms_to_timestamp(column) -%}
    to_timestamp({{ column }} / 1000.0)
{%- endmacro %}
