{#-
    A PII value as the marts analysts read it: treated the way the stream catalogue (include/crm_streams.yml,
    pii_columns) says for the raw columns it comes from, named as `source.stream.column`:

        {{ pii('latest.email', 'hubspot.contacts.properties_email', 'salesforce.Contact.Email') }}

    hash is crm_pii.pseudonymise (keyed HMAC-SHA256, installed with the pepper by `crm warehouse grants`), mask is
    crm_pii.mask (first character and ***). When the sources disagree the stronger treatment wins (hash). A
    column the catalogue does not mark as PII is a compile error: the macro would otherwise hide a typo.
    `crm pii-check` proves every mart column fed by a PII column goes through here (docs/security.md).
-#}
{% macro pii(expression) -%}
    {%- if varargs | length == 0 -%}
        {{ exceptions.raise_compiler_error("pii(" ~ expression ~ "): name the catalogue columns it comes from") }}
    {%- endif -%}
    {%- set treatments = [] -%}
    {%- for column in varargs -%}
        {%- do treatments.append(pii_treatment(column)) -%}
    {%- endfor -%}
    {%- if 'hash' in treatments -%}
        crm_pii.pseudonymise({{ expression }})
    {%- else -%}
        crm_pii.mask({{ expression }})
    {%- endif -%}
{%- endmacro %}


{#- The catalogue's treatment of `source.stream.column` (the generated source files carry it as meta.pii). -#}
{% macro pii_treatment(column) -%}
    {%- set parts = column.split('.') -%}
    {%- if parts | length != 3 -%}
        {{ exceptions.raise_compiler_error("pii: " ~ column ~ " is not source.stream.column") }}
    {%- endif -%}
    {#- Parsing renders without the graph, and dbt's unit tests render with one that holds no sources: both get the
        stronger treatment. The build and `crm pii-check` always see the catalogue's. -#}
    {%- if not execute or graph.get('sources') is none -%}
        {{ return('hash') }}
    {%- endif -%}
    {%- set source = graph.sources.get('source.' ~ project_name ~ '.' ~ parts[0] ~ '.' ~ parts[1]) -%}
    {%- if source is none -%}
        {{ exceptions.raise_compiler_error("pii: no source " ~ parts[0] ~ "." ~ parts[1] ~ " in the catalogue") }}
    {%- endif -%}
    {%- set treatment = ((source.columns.get(parts[2]) or {}).get('meta') or {}).get('pii') -%}
    {%- if treatment not in ('hash', 'mask') -%}
        {{ exceptions.raise_compiler_error(
            "pii: " ~ column ~ " is not a PII column in include/crm_streams.yml (pii_columns)"
        ) }}
    {%- endif -%}
    {{ return(treatment) }}
{%- endmacro %}


{#-
    A surrogate key made from personal data (an email): keyed like a hashed PII value, so that it cannot be
    recomputed from a guessed address as an md5 could.
-#}
{% macro pii_key(expression) -%}
    crm_pii.pseudonymise({{ expression }})
{%- endmacro %}
