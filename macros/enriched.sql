{#-
    {{ batch_enrich.enriched('<enrichment>') }}: every input row, left-joined to its
    latest valid output (docs/output-models.md).

    The output preferred for a key is the latest valid one for the current request hash;
    if there is none (the input or the prompt changed and the new request has not
    landed), the latest valid output of an earlier request, with is_output_current false.

    Columns: the input model's columns; the output's top-level properties as typed
    columns (string -> text, integer -> bigint, number -> double precision, boolean ->
    boolean, anything else -> JSON), or `output_text` when the enrichment declares no
    schema; then the lineage: batch_id, custom_id, model, prompt_version, request_hash,
    attempt, landed_at, is_output_current, is_shared_result.

    Outputs reach keys through stg_enrich_ledger__request_keys: a request's result serves
    its own key and, with `dedupe: true`, the keys that shared it (is_shared_result true;
    custom_id and batch_id stay those of the request that was sent).

    Only live outputs count: a pilot request's output (flag_reason 'pilot') only once its
    model and prompt_version are switched to (int_enrich__live_versions, macros/pilot.sql).
-#}

{% macro lineage_columns() -%}
    {{- return([
        'batch_id', 'custom_id', 'model', 'prompt_version', 'request_hash', 'attempt', 'landed_at',
        'is_output_current', 'is_shared_result',
    ]) -}}
{%- endmacro %}


{#- (column name, SQL expression over `json_expression`) for each declared output property. -#}
{% macro output_columns(decl, json_expression, text_expression) -%}
    {%- set columns = [] -%}
    {%- if decl['schema'] is none -%}
        {%- do columns.append(('output_text', text_expression)) -%}
    {%- else -%}
        {%- for name, property in (decl['schema'].get('properties') or {}).items() -%}
            {%- set types = property.get('type') -%}
            {%- set types = [types] if types is string else (types or []) -%}
            {%- set types = types | reject('equalto', 'null') | list -%}
            {%- set type = types[0] if types | length == 1 else none -%}
            {%- set text = batch_enrich.json_get_text(json_expression, [name]) -%}
            {%- if type == 'string' -%}
                {%- set expression = text -%}
            {%- elif type == 'integer' -%}
                {%- set expression = 'cast(cast(' ~ text ~ ' as double precision) as bigint)' -%}
            {%- elif type == 'number' -%}
                {%- set expression = 'cast(' ~ text ~ ' as double precision)' -%}
            {%- elif type == 'boolean' -%}
                {%- set expression = 'cast(' ~ text ~ ' as boolean)' -%}
            {%- else -%}
                {%- set expression = batch_enrich.json_get(json_expression, [name]) -%}
            {%- endif -%}
            {%- do columns.append((name, expression)) -%}
        {%- endfor -%}
    {%- endif -%}
    {{- return(columns) -}}
{%- endmacro %}


{% macro enriched(enrichment) -%}
    {%- set input_relation = ref(enrichment) -%}
    {%- set validated_relation = ref('batch_enrich', 'int_enrich__results_validated') -%}
    {%- set request_keys_relation = ref('batch_enrich', 'stg_enrich_ledger__request_keys') -%}
    {%- set live_versions_relation = ref('batch_enrich', 'int_enrich__live_versions') -%}
    {%- do ref('batch_enrich', 'int_enrich__request_outcomes') -%}
    {%- do ref('batch_enrich', 'int_enrich__build_log') -%}
    {%- set name = enrichment | replace("'", "") -%}
    {#- incremental by input key (macros/incremental.sql); config() here is the model's own -#}
    {{ config(
        materialized=batch_enrich.incremental_materialization(),
        incremental_strategy='append',
        on_schema_change='sync_all_columns',
        pre_hook="{{ batch_enrich.enriched_prune('" ~ name ~ "') }}",
        post_hook="{{ batch_enrich.record_build(batch_enrich.enriched_fingerprint('" ~ name ~ "')) }}",
    ) }}
    {%- if execute -%}
        {{ batch_enrich.enriched_sql(
            batch_enrich.get_declaration(enrichment),
            input_relation,
            validated_relation,
            request_keys_relation,
            live_versions_relation,
        ) }}
    {%- else -%}
        select 1 as parse_placeholder
    {%- endif -%}
{%- endmacro %}


{#-
    What, when it changes, changes every row of an enriched table: the declaration, the
    input model's columns and the enrichment's live versions.
-#}
{% macro enriched_fingerprint(enrichment) -%}
    {%- set input_relation = ref(enrichment) -%}
    {%- if not execute -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set columns = [] -%}
    {%- for column in adapter.get_columns_in_relation(input_relation) -%}
        {%- do columns.append([column.name, column.data_type]) -%}
    {%- endfor -%}
    {{- return(batch_enrich.fingerprint([
        'enriched',
        batch_enrich.get_declaration(enrichment),
        columns,
        batch_enrich.live_versions_fingerprint_part(enrichment),
    ])) -}}
{%- endmacro %}


{#-
    Pre-hook of an incremental enriched table: delete the rows that this build writes
    again. The model then selects the input rows whose key has no row (those, and new
    keys). Every row when the fingerprint changed (enriched_fingerprint); otherwise the
    rows without an identical input row (the key left the input model, or its row
    changed), and those that a request whose outcome changed since the last build served.
-#}
{% macro enriched_prune(enrichment) -%}
    {%- if not execute or not is_incremental() -%}
        {{- return('') -}}
    {%- endif -%}
    {%- set decl = batch_enrich.get_declaration(enrichment) -%}
    {%- set since = batch_enrich.incremental_since(batch_enrich.enriched_fingerprint(enrichment)) -%}
    {%- set input_relation = ref(enrichment) -%}
    {%- if since is none -%}
        {{- return('delete from ' ~ this ~ batch_enrich.analyzed_after(this)) -}}
    {%- endif -%}
    {%- set pk = decl['primary_key'] -%}
    {%- set input_columns = adapter.get_columns_in_relation(input_relation) -%}
    {#- rows without an identical input row: their key left the input, or its row changed #}
    delete from {{ this }} as enriched_rows
    where not exists (
        select 1
        from {{ input_relation }} as input_rows
        where
            {%- for column in pk %}
            {{ batch_enrich.column_ref(column, 'input_rows') }} = {{ batch_enrich.column_ref(column, 'enriched_rows') }} and
            {%- endfor %}
            {%- for column in input_columns %}
            {% if not loop.first %}and {% endif %}{{ batch_enrich.comparable(column, 'input_rows') }}
            is not distinct from {{ batch_enrich.comparable(column, 'enriched_rows') }}
            {%- endfor %}
    );
    {#- rows that a request whose outcome changed since the last build served #}
    delete from {{ this }} as enriched_rows
    where exists (
        select 1
        from ({{ batch_enrich.changed_keys_sql(since) | indent(8) }}) as changed_keys
        where
            changed_keys.enrichment = {{ batch_enrich.sql_text_literal(decl['name']) }}
            {%- for column in pk %}
            and {{ batch_enrich.json_get_text('changed_keys.primary_key', [column]) }}
            = cast({{ batch_enrich.column_ref(column, 'enriched_rows') }} as text)
            {%- endfor %}
    ){{ batch_enrich.analyzed_after(this) }}
{%- endmacro %}


{#- A column as compared: as it is, or as text where its type has no equality (Postgres json). -#}
{% macro comparable(column, relation_alias) -%}
    {%- set ref_ = batch_enrich.column_ref(column.name, relation_alias) -%}
    {%- if column.data_type | lower in ['json', 'xml', 'point', 'polygon', 'box', 'circle', 'line', 'path'] -%}
        {{- return('cast(' ~ ref_ ~ ' as text)') -}}
    {%- endif -%}
    {{- return(ref_) -}}
{%- endmacro %}


{% macro enriched_sql(decl, input_relation, validated_relation, request_keys_relation, live_versions_relation) -%}
    {%- set pk = decl['primary_key'] -%}
    {%- set prompt = batch_enrich.column_ref(decl['prompt_column'], 'input_rows') -%}
    {%- set outputs = batch_enrich.output_columns(decl, 'latest_outputs.output_json', 'latest_outputs.content_text') -%}
    {%- set new_names = outputs | map(attribute=0) | list + batch_enrich.lineage_columns() -%}

    {#- Output and lineage columns must not collide with the input model's columns. -#}
    {%- set existing = adapter.get_columns_in_relation(input_relation) | map(attribute='name') | map('lower') | list -%}
    {%- set collisions = [] -%}
    {%- for name in new_names if name | lower in existing -%}
        {%- do collisions.append(name) -%}
    {%- endfor -%}
    {%- if collisions -%}
        {%- do exceptions.raise_compiler_error(
            "batch_enrich.enriched('" ~ decl['name'] ~ "'): the input model already has column(s) "
            ~ collisions | join(', ') ~ ", which the enriched model adds (output properties and lineage "
            ~ "columns); rename them in the input model"
        ) -%}
    {%- endif -%}
with

input_rows as (

    select input_source.* from {{ input_relation }} as input_source
    {%- if is_incremental() %}
    {#- an incremental build: the rows the pre-hook took out (enriched_prune), and new ones #}
    where not exists (
        select 1
        from {{ this }} as enriched_before
        where
            {%- for column in pk %}
            {% if not loop.first %}and {% endif %}{{ batch_enrich.column_ref(column, 'enriched_before') }} = {{ batch_enrich.column_ref(column, 'input_source') }}
            {%- endfor %}
    )
    {%- endif %}

),

live_versions as (

    select * from {{ live_versions_relation }}
    where enrichment = {{ batch_enrich.sql_text_literal(decl['name']) }}

),

validated as (

    select results_validated.*
    from {{ validated_relation }} as results_validated
    left join live_versions
        on
            results_validated.request_model = live_versions.model
            and results_validated.prompt_version = live_versions.prompt_version
    where
        results_validated.enrichment = {{ batch_enrich.sql_text_literal(decl['name']) }}
        and results_validated.is_valid
        and {{ batch_enrich.is_live('results_validated.flag_reason', 'live_versions') }}

),

request_keys as (

    select request_keys_source.* from {{ request_keys_relation }} as request_keys_source
    where
        request_keys_source.enrichment = {{ batch_enrich.sql_text_literal(decl['name']) }}
        {%- if is_incremental() %}
        and exists (
            select 1
            from input_rows
            where
                {%- for column in pk %}
                {% if not loop.first %}and {% endif %}cast({{ batch_enrich.column_ref(column, 'input_rows') }} as text)
                = {{ batch_enrich.json_get_text('request_keys_source.primary_key', [column]) }}
                {%- endfor %}
        )
        {%- endif %}

),

current_requests as (

    select
        {%- for column in pk %}
        cast({{ batch_enrich.column_ref(column, 'input_rows') }} as text) as key_text_{{ loop.index0 }},
        {%- endfor %}
        {{ batch_enrich.request_hash_sql(decl, prompt) }} as request_hash

    from input_rows

),

outputs as (

    select
        {%- for column in pk %}
        {{ batch_enrich.json_get_text('request_keys.primary_key', [column]) }} as key_text_{{ loop.index0 }},
        {%- endfor %}
        validated.batch_id,
        validated.custom_id,
        validated.request_model as model,
        validated.prompt_version,
        validated.request_hash,
        validated.attempt,
        validated.landed_at,
        validated.output_json,
        validated.content_text,
        request_keys.is_shared_result

    from validated
    inner join request_keys
        on
            validated.submission_id = request_keys.submission_id
            and validated.custom_id = request_keys.custom_id

),

ranked_outputs as (

    select
        outputs.*,
        outputs.request_hash = current_requests.request_hash as is_output_current,
        row_number() over (
            partition by
                {%- for column in pk %}
                outputs.key_text_{{ loop.index0 }}{% if not loop.last %},{% endif %}
                {%- endfor %}
            order by
                case when outputs.request_hash = current_requests.request_hash then 0 else 1 end,
                outputs.landed_at desc,
                outputs.attempt desc
        ) as preference_rank

    from outputs
    inner join current_requests
        on
            {%- for column in pk %}
            {% if not loop.first %}and {% endif %}outputs.key_text_{{ loop.index0 }} = current_requests.key_text_{{ loop.index0 }}
            {%- endfor %}

),

latest_outputs as (

    select * from ranked_outputs
    where preference_rank = 1

),

final as (

    select
        input_rows.*,
        {%- for name, expression in outputs %}
        {{ expression }} as {{ batch_enrich.column_ref(name) }},
        {%- endfor %}
        latest_outputs.batch_id,
        latest_outputs.custom_id,
        latest_outputs.model,
        latest_outputs.prompt_version,
        latest_outputs.request_hash,
        latest_outputs.attempt,
        latest_outputs.landed_at,
        latest_outputs.is_output_current,
        latest_outputs.is_shared_result

    from input_rows
    left join latest_outputs
        on
            {%- for column in pk %}
            {% if not loop.first %}and {% endif %}cast({{ batch_enrich.column_ref(column, 'input_rows') }} as text) = latest_outputs.key_text_{{ loop.index0 }}
            {%- endfor %}

)

select * from final
{%- endmacro %}
