{#-
    {{ batch_enrich.flagged('<enrichment>') }}: the body of the flagged view the
    connector reads (docs/architecture.md §2, docs/flagging.md).

    One row per input row that needs a request, with the key column(s), the prompt
    column, request_hash, input_hash, flag_reason and max_tokens:

      new             the key has never been requested
      model_changed   the key's latest request used another model
      prompt_changed  ... another prompt_version, or the same prompt text under another
                      system prompt, schema, tool or max_tokens
      input_changed   ... another prompt text (input_hash)
      retry           the latest request for the current hash failed in a retryable way
                      (errored but not invalid_request_error, expired, canceled, missing,
                      lost) and attempts remain
      repair          the latest request for the current hash was truncated at
                      max_tokens (repair.on_max_tokens) or invalid (repair.on_invalid) and
                      attempts remain; a truncation repair multiplies max_tokens

    Never flagged: keys with a request in flight (including requests submitted or landed
    since the last dbt build), keys with a valid result for the current request hash,
    keys whose latest request for the current hash ended in invalid_request_error.

    A key's requests are those of stg_enrich_ledger__request_keys: its own, and with
    `dedupe: true` the requests of other rows whose result it shares. A shared request
    counts for every key it serves (in flight, succeeded, retry ...). Attempts for the
    current hash are the highest attempt number of the key's own requests, or, when
    higher, the number of requests that served it outside abandoned batches (the
    connector's count, which a row that shares results may reach without a request of
    its own).
-#}

{#-
    A column reference, always quoted (embedded quotes doubled): a column named like a
    reserved word or a function (`user`, `order`, `current_date`) is that column, never
    the keyword. Postgres folds unquoted names to lowercase, so a declaration names the
    column as the warehouse stores it (lowercase for unquoted names in the input model).
-#}
{% macro column_ref(name, relation_alias=none) -%}
    {%- set quoted = batch_enrich.quote_identifier(name) -%}
    {{- return((relation_alias ~ '.' if relation_alias else '') ~ quoted) -}}
{%- endmacro %}


{% macro request_hash_sql(decl, prompt_expression) -%}
    md5({{ batch_enrich.sql_text_literal(batch_enrich.request_ingredients(decl)) }} || coalesce(cast({{ prompt_expression }} as text), ''))
{%- endmacro %}


{% macro input_hash_sql(prompt_expression) -%}
    md5(coalesce(cast({{ prompt_expression }} as text), ''))
{%- endmacro %}


{% macro flagged(enrichment) -%}
    {%- set input_relation = ref(enrichment) -%}
    {%- set request_keys_relation = ref('batch_enrich', 'stg_enrich_ledger__request_keys') -%}
    {%- set batches_relation = ref('batch_enrich', 'stg_enrich_ledger__batches') -%}
    {%- set outcomes_relation = ref('batch_enrich', 'int_enrich__request_outcomes') -%}
    {%- if execute -%}
        {{ batch_enrich.flagged_sql(
            batch_enrich.get_declaration(enrichment),
            input_relation,
            request_keys_relation,
            batches_relation,
            outcomes_relation,
        ) }}
    {%- else -%}
        select 1 as parse_placeholder
    {%- endif -%}
{%- endmacro %}


{% macro flagged_sql(decl, input_relation, request_keys_relation, batches_relation, outcomes_relation) -%}
    {%- set pk = decl['primary_key'] -%}
    {%- set prompt = batch_enrich.column_ref(decl['prompt_column'], 'input_rows') -%}
    {%- set name = batch_enrich.sql_text_literal(decl['name']) -%}
    {%- set key_partition = [] -%}
    {%- set ledger_key_partition = [] -%}
    {%- for column in pk -%}
        {%- do key_partition.append('key_text_' ~ loop.index0) -%}
        {%- do ledger_key_partition.append('ledger_requests.key_text_' ~ loop.index0) -%}
    {%- endfor -%}
    {%- set repair = decl['repair'] -%}
with

input_rows as (

    select * from {{ input_relation }}

),

request_keys as (

    select * from {{ request_keys_relation }}
    where enrichment = {{ name }}

),

batches as (

    select * from {{ batches_relation }}

),

outcomes as (

    select * from {{ outcomes_relation }}
    where enrichment = {{ name }}

),

current_requests as (

    select
        {%- for column in pk %}
        {{ batch_enrich.column_ref(column, 'input_rows') }},
        {%- endfor %}
        {{ prompt }},
        {%- for column in pk %}
        cast({{ batch_enrich.column_ref(column, 'input_rows') }} as text) as key_text_{{ loop.index0 }},
        {%- endfor %}
        {{ batch_enrich.request_hash_sql(decl, prompt) }} as request_hash,
        {{ batch_enrich.input_hash_sql(prompt) }} as input_hash

    from input_rows

),

ledger_requests as (

    select
        {%- for column in pk %}
        {{ batch_enrich.json_get_text('request_keys.primary_key', [column]) }} as key_text_{{ loop.index0 }},
        {%- endfor %}
        request_keys.submission_id,
        request_keys.request_hash,
        request_keys.input_hash,
        request_keys.attempt,
        request_keys.model,
        request_keys.prompt_version,
        request_keys.max_tokens,
        request_keys.is_shared_result,
        batches.intent_at,
        coalesce(batches.batch_status <> 'abandoned', false) as is_attempted,
        {# a request the last build has not classified yet is still in flight for us #}
        coalesce(outcomes.outcome, 'in_flight') as outcome

    from request_keys
    left join batches
        on request_keys.submission_id = batches.submission_id
    left join outcomes
        on
            request_keys.submission_id = outcomes.submission_id
            and request_keys.custom_id = outcomes.custom_id

),

key_history as (

    select
        ledger_requests.*,
        ledger_requests.request_hash = current_requests.request_hash as is_current_hash,
        row_number() over (
            partition by {{ ledger_key_partition | join(', ') }}
            order by ledger_requests.intent_at desc nulls last, ledger_requests.attempt desc
        ) as recency_rank,
        row_number() over (
            partition by
                {{ ledger_key_partition | join(', ') }},
                ledger_requests.request_hash = current_requests.request_hash
            {#- by time, like recency_rank: a shared request's attempt is the sender's count #}
            order by ledger_requests.intent_at desc nulls last, ledger_requests.attempt desc
        ) as hash_recency_rank

    from ledger_requests
    inner join current_requests
        on
            {%- for column in pk %}
            {% if not loop.first %}and {% endif %}ledger_requests.key_text_{{ loop.index0 }} = current_requests.key_text_{{ loop.index0 }}
            {%- endfor %}

),

key_states as (

    select
        {%- for column in pk %}
        key_text_{{ loop.index0 }},
        {%- endfor %}
        count(*) as request_count,
        max(case when outcome = 'in_flight' then 1 else 0 end) = 1 as has_in_flight,
        max(case when is_current_hash and outcome = 'succeeded_valid' then 1 else 0 end) = 1
            as has_valid_current,
        greatest(
            coalesce(max(case when is_current_hash and not is_shared_result then attempt end), 0),
            sum(case when is_current_hash and is_attempted then 1 else 0 end)
        ) as current_hash_attempts,
        max(case when recency_rank = 1 then model end) as latest_model,
        max(case when recency_rank = 1 then prompt_version end) as latest_prompt_version,
        max(case when recency_rank = 1 then input_hash end) as latest_input_hash,
        max(case when is_current_hash and hash_recency_rank = 1 then outcome end) as current_hash_outcome,
        max(case when is_current_hash and hash_recency_rank = 1 then max_tokens end) as current_hash_max_tokens

    from key_history
    group by {{ key_partition | join(', ') }}

),

decided as (

    select
        current_requests.*,
        case
            when key_states.has_in_flight then null
            when key_states.has_valid_current then null
            when key_states.request_count is null then 'new'
            when key_states.current_hash_outcome is null then
                case
                    when key_states.latest_model <> {{ batch_enrich.sql_text_literal(decl['model']) }}
                        then 'model_changed'
                    when key_states.latest_prompt_version <> {{ batch_enrich.sql_text_literal(decl['prompt_version']) }}
                        then 'prompt_changed'
                    when key_states.latest_input_hash = current_requests.input_hash then 'prompt_changed'
                    else 'input_changed'
                end
            when key_states.current_hash_attempts >= {{ batch_enrich.sql_number(decl['max_attempts']) }} then null
            when key_states.current_hash_outcome in ('errored_retryable', 'expired', 'canceled', 'missing', 'lost')
                then 'retry'
            {%- if repair['on_max_tokens'] %}
            when key_states.current_hash_outcome = 'truncated' then 'repair'
            {%- endif %}
            {%- if repair['on_invalid'] %}
            when key_states.current_hash_outcome = 'succeeded_invalid' then 'repair'
            {%- endif %}
        end as flag_reason,
        case
            when key_states.current_hash_outcome = 'truncated'
                then cast(ceil(key_states.current_hash_max_tokens * {{ batch_enrich.sql_number(repair['max_tokens_multiplier']) }}) as integer)
            when key_states.current_hash_outcome = 'succeeded_invalid'
                then key_states.current_hash_max_tokens
            else {{ batch_enrich.sql_number(decl['max_tokens']) }}
        end as repair_max_tokens

    from current_requests
    left join key_states
        on
            {%- for column in pk %}
            {% if not loop.first %}and {% endif %}current_requests.key_text_{{ loop.index0 }} = key_states.key_text_{{ loop.index0 }}
            {%- endfor %}

),

final as (

    select
        {%- for column in pk %}
        {{ batch_enrich.column_ref(column) }},
        {%- endfor %}
        {{ batch_enrich.column_ref(decl['prompt_column']) }},
        request_hash,
        input_hash,
        flag_reason,
        case
            when flag_reason = 'repair' then repair_max_tokens
            else {{ batch_enrich.sql_number(decl['max_tokens']) }}
        end as max_tokens

    from decided
    where flag_reason is not null

)

select * from final
{%- endmacro %}
