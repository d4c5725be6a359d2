{#- HubSpot's association arrays, as source-hubspot writes them (a jsonb array of ids, null when there is none):
    in no particular order, an id repeated once per association type. The connector carries no association label,
    so "primary" is a rule of ours, documented in docs/decisions.md: the lowest id, which HubSpot issued first
    (ids are numbers written as text, so shorter sorts first). -#}
{% macro primary_association(column) -%}
    (select association.id from jsonb_array_elements_text({{ column }}) as association (id)
        order by length(association.id), association.id limit 1)
{%- endmacro %}
