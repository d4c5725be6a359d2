{#- A company name for matching: lower case, punctuation dropped, a trailing legal form (Inc, GmbH, Ltd, ...)
    removed, spaces collapsed; "Bright Analytics, Inc." and "BRIGHT ANALYTICS INC" become "bright analytics". -#}
{% macro normalize_name(column) -%}
    nullif(
        trim(
            regexp_replace(
                regexp_replace(
                    regexp_replace(lower({{ column }}), '[^a-z0-9 ]', ' ', 'g'),
                    '\s+(inc|gmbh|ltd|sa|bv|ab|llc|oy|corp|co)\s*$', ''
                ),
                '\s+', ' ', 'g'
            )
        ),
        ''
    )
{%- endmacro %}
