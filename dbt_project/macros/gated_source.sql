{#- A raw table as its raw gates let it through: staging reads every source through this.

    * Only judged batches: once gates run in this warehouse (crm_audit.batch_verdicts exists), a row is read only
      when the batch that wrote it (its _airbyte_meta sync_id) has a verdict. Extract DAGs and the transform run
      independently, so a sync may have loaded rows that no gate has judged yet, or whose gate crashed: those
      stay out until a verdict lets them in. Batches judged after the transform run started (its cutoff, in
      crm_audit.transform_cutoff) stay out too, so every model of one run, and the mart audit's reconciliation,
      see the same batches while extract DAGs go on loading.
    * Without the rows the gate quarantined (crm_audit.quarantine, by _airbyte_raw_id; a stopped batch is
      quarantined whole), while the raw table keeps them as the connector wrote them. `crm quarantine release`
      deletes a batch's quarantine rows, and the next run reads them. The stream is named although raw ids are
      unique: without it PostgreSQL estimates the anti-join against every stream's quarantine. With a stopped
      5.3 M-row batch of another stream quarantined (scale L), it expected one row out of 335 k, and a
      relationships test on two staging views ran as a nested loop for over 13 minutes (docs/performance.md).

    * In its contract's shape (the columns and types of the catalogue, in the generated sources yml): the
      destination drops a column the source stopped sending and retypes one whose type changed, and a gate stops
      those batches; the rows it judged before are still read, a dropped column as null and a retyped one cast
      back to its contract type, so the stream's models keep building (docs/raw-contract.md, "A column dropped or
      retyped"). A table that matches its contract is read as it is.

    Both tables are looked up rather than declared as sources so that unit tests need no mock for them (their
    fixture rows belong to no batch, so a unit test reads them unfiltered); a warehouse where no gate has run yet
    (a bare dbt run in development) has neither and nothing is left out. -#}
{% macro gated_source(source_name, table_name) -%}
    select {{ contract_columns(source_name, table_name, 'raw_rows') }}
    from {{ source(source_name, table_name) }} as raw_rows
    where {{ judged_row(source_name, table_name, 'raw_rows') }}
{%- endmacro %}

{#- The condition gated_source reads a raw row under (``alias`` names the raw table in the query): its batch judged
    before the run's cutoff, the row not quarantined. ``true`` where no gate has run. -#}
{% macro judged_row(source_name, table_name, alias) -%}
    {%- set verdicts = adapter.get_relation(database=target.database, schema='crm_audit', identifier='batch_verdicts')
        if execute and model.resource_type != 'unit_test' else none -%}
    {%- set cutoff = adapter.get_relation(database=target.database, schema='crm_audit', identifier='transform_cutoff')
        if verdicts is not none else none -%}
    {%- set in_time = "coalesce((select cutoff.judged_before from " ~ cutoff ~ " as cutoff), 'infinity')"
        if cutoff is not none else 'judged.judged_at' -%}
    {%- set quarantine = adapter.get_relation(database=target.database, schema='crm_audit', identifier='quarantine')
        if execute else none -%}
    true
    {%- if verdicts is not none %}
        and exists (
            select from {{ verdicts }} as judged
            where
                judged.stream = '{{ source_name }}.{{ table_name }}'
                and judged.sync_id = ({{ alias }}._airbyte_meta ->> 'sync_id')::bigint
                and judged.judged_at <= {{ in_time }}
        )
    {%- endif %}
    {%- if quarantine is not none %}
        and not exists (
            select from {{ quarantine }} as quarantined
            where
                quarantined.stream = '{{ source_name }}.{{ table_name }}'
                and quarantined.raw_id = {{ alias }}._airbyte_raw_id
        )
    {%- endif %}
{%- endmacro %}

{#- The select list that reads a raw table in its contract's shape (see gated_source): ``<alias>.*`` when it
    matches, or where nothing can be known (parsing, no table yet, a table the catalogue does not declare). A retyped
    column is cast back as the destination's own USING clauses would restore it (``c #>> '{}'`` out of jsonb,
    ``to_jsonb(c)`` into it, ``c::t`` otherwise; a naive timestamp was made in a UTC session). The mart audit's
    reconciliation reads raw the same way (``crm_pipeline.sources.contract.contract_select``). -#}
{% macro contract_columns(source_name, table_name, alias) -%}
    {%- set declared = raw_contract(source_name, table_name) if execute else none -%}
    {%- set contract = declared.columns if declared else {} -%}
    {%- set present = {} -%}
    {%- set spelled = {
        'character varying': 'varchar', 'numeric': 'decimal', 'timestamp without time zone': 'timestamp'
    } -%}
    {#- the table itself, also in a unit test: dbt gives its fixture rows the table's own columns -#}
    {%- set table = adapter.get_relation(database=target.database, schema=declared.schema, identifier=table_name)
        if contract else none -%}
    {%- for column in (adapter.get_columns_in_relation(table) if table is not none else []) -%}
        {%- do present.update({column.name: spelled.get(column.dtype, column.dtype)}) -%}
    {%- endfor -%}
    {%- set columns = [] -%}
    {%- set changed = [] -%}
    {%- for name, have in present.items() -%}
        {%- set want = contract.get(name, have) -%}
        {%- set quoted = alias ~ '.' ~ adapter.quote(name) -%}
        {%- if want == have -%}
            {%- do columns.append(quoted) -%}
        {%- else -%}
            {%- do changed.append(name) -%}
            {%- if have == 'jsonb' -%}
                {%- do columns.append('(' ~ quoted ~ " #>> '{}')::" ~ want ~ ' as ' ~ adapter.quote(name)) -%}
            {%- elif want == 'jsonb' -%}
                {%- do columns.append('to_jsonb(' ~ quoted ~ ') as ' ~ adapter.quote(name)) -%}
            {%- elif have == 'timestamp' and want == 'timestamp with time zone' -%}
                {%- do columns.append('(' ~ quoted ~ " at time zone 'UTC') as " ~ adapter.quote(name)) -%}
            {%- else -%}
                {%- do columns.append(quoted ~ '::' ~ want ~ ' as ' ~ adapter.quote(name)) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for name, want in contract.items() if name not in present -%}
        {%- do changed.append(name) -%}
        {%- do columns.append('null::' ~ want ~ ' as ' ~ adapter.quote(name)) -%}
    {%- endfor -%}
    {%- if changed and present -%}
        {{ columns | join(', ') }}
    {%- else -%}
        {{ alias }}.*
    {%- endif -%}
{%- endmacro %}
