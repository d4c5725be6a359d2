{#- E.164 where the digits allow it: "+" and the digits when the value starts with "+", a North American
    10-digit number gets +1, an 11-digit number starting with 1 gets "+"; anything else is null (unknown). -#}
{% macro normalize_phone(column) -%}
    case
        when {{ column }} is null then null
        when trim({{ column }}) like '+%'
            then '+' || regexp_replace({{ column }}, '[^0-9]', '', 'g')
        when length(regexp_replace({{ column }}, '[^0-9]', '', 'g')) = 10
            then '+1' || regexp_replace({{ column }}, '[^0-9]', '', 'g')
        when length(regexp_replace({{ column }}, '[^0-9]', '', 'g')) = 11
            and regexp_replace({{ column }}, '[^0-9]', '', 'g') like '1%'
            then '+' || regexp_replace({{ column }}, '[^0-9]', '', 'g')
    end
{%- endmacro %}
