{#-
    Generic test `batch_enrich.max_pending_usd` (docs/costs.md, "A budget gate in dbt
    build"): fails when what an enrichment's flagged view holds now would cost more than
    `max_usd` at batch prices.

        - name: ticket_triage__flagged
          data_tests:
            - batch_enrich.max_pending_usd:
                arguments:
                  enrichment: ticket_triage
                  max_usd: 10          # optional; default var('batch_enrich_max_pending_usd')

    The flagged rows are those the build found (enrich_backlog_rows: the flagged view's
    rows when the build ran, kept up to date incrementally), with their prompts from the
    input model, so the gate does not evaluate the flagged view. The estimate, per
    flagged row (one per distinct request_hash with `dedupe: true`):

      request bytes   the declaration's fixed request parts (system prompt, schema or
                      tool, cached_prefix, markers) as JSON, plus the prompt's and key's
                      bytes: about what the connector records in requests.params_bytes
      input tokens    request bytes / bytes per token; bytes per token is calibrated from
                      this enrichment's most recent 20,000 landed succeeded requests (sum of
                      params_bytes over the sum of input, cache write and cache read tokens;
                      the connector's estimate reads as many), else 4
      output tokens   the average output_tokens of those landed requests, else max_tokens / 2
      USD             tokens x the model's seed prices x (1 - batch_discount); cache writes
                      and reads are not assumed (all input at the plain input price)

    It returns one row when the estimate is over the threshold, or when the model has no
    row in batch_enrich_model_prices and something is flagged (a gate that cannot price
    must not pass silently). The row names the enrichment, the estimate and the threshold.
-#}

{% test max_pending_usd(model, enrichment, max_usd=none) %}
    {%- set parsed_relation = ref('int_enrich__results_parsed') -%}
    {%- set requests_relation = ref('stg_enrich_ledger__requests') -%}
    {%- set prices_relation = ref('batch_enrich_model_prices') -%}
    {%- set backlog_relation = ref('enrich_backlog_rows') -%}
    {%- set input_relation = ref(enrichment) -%}
    {%- if execute -%}
        {{ batch_enrich.max_pending_usd_sql(
            batch_enrich.get_declaration(enrichment),
            input_relation,
            parsed_relation,
            requests_relation,
            prices_relation,
            batch_enrich.max_pending_threshold(max_usd),
            backlog_relation,
        ) }}
    {%- else -%}
        select 1 as parse_placeholder
    {%- endif -%}
{% endtest %}


{#- The threshold: the test's max_usd, else the var; a number >= 0 or a compile error. -#}
{% macro max_pending_threshold(max_usd) -%}
    {%- set value = max_usd if max_usd is not none else var('batch_enrich_max_pending_usd', none) -%}
    {%- set number = value | float(-1) if value is not none and value is not boolean else -1 -%}
    {%- if number < 0 or not (number - number == 0) -%}
        {%- do exceptions.raise_compiler_error(
            "batch_enrich.max_pending_usd: max_usd (or var 'batch_enrich_max_pending_usd') must be a number >= 0, got: " ~ value
        ) -%}
    {%- endif -%}
    {{- return(number) -}}
{%- endmacro %}


{#-
    Bytes of everything in a request line except the prompt and the custom_id: the
    `{"custom_id", "params"}` element as the connector builds it (connector/requests.py),
    with an empty prompt, in compact UTF-8 JSON.
-#}
{% macro request_fixed_bytes(decl) -%}
    {%- set marker = {'type': 'ephemeral', 'ttl': decl['cache_ttl']} if decl['cache'] else none -%}
    {%- set params = {'model': decl['model'], 'max_tokens': decl['max_tokens']} -%}
    {%- if decl['cached_prefix'] is not none -%}
        {%- set prefix_block = {'type': 'text', 'text': decl['cached_prefix']} -%}
        {%- if marker is not none -%}
            {%- do prefix_block.update({'cache_control': marker}) -%}
        {%- endif -%}
        {%- set content = [prefix_block, {'type': 'text', 'text': ''}] -%}
    {%- else -%}
        {%- set content = '' -%}
    {%- endif -%}
    {%- do params.update({'messages': [{'role': 'user', 'content': content}]}) -%}
    {%- if decl['system'] is not none -%}
        {%- if marker is not none -%}
            {%- do params.update({'system': [{'type': 'text', 'text': decl['system'], 'cache_control': marker}]}) -%}
        {%- else -%}
            {%- do params.update({'system': decl['system']}) -%}
        {%- endif -%}
    {%- endif -%}
    {%- if decl['output_schema'] is not none -%}
        {%- do params.update({'output_config': {'format': {'type': 'json_schema', 'schema': decl['output_schema']}}}) -%}
    {%- endif -%}
    {%- if decl['tool'] is not none -%}
        {%- do params.update({'tools': [decl['tool']], 'tool_choice': {'type': 'tool', 'name': decl['tool']['name']}}) -%}
    {%- endif -%}
    {{- return(batch_enrich.json_compact_bytes({'custom_id': '', 'params': params})) -}}
{%- endmacro %}


{#-
    Bytes of a value as compact UTF-8 JSON (no spaces after `:` and `,`, as the connector
    writes it), where dbt's tojson would add separator spaces and escape non-ASCII text.
-#}
{% macro json_compact_bytes(value) -%}
    {%- if value is string -%}
        {%- set escaped = value.count('"') + value.count('\\') + value.count('\n') + value.count('\r') + value.count('\t') -%}
        {{- return(2 + (value.encode('utf-8') | length) + escaped) -}}
    {%- elif value is mapping -%}
        {%- set total = namespace(bytes=1 + [value | length, 1] | max) -%}
        {%- for key, item in value.items() -%}
            {%- set total.bytes = total.bytes + batch_enrich.json_compact_bytes(key | string) + 1 + batch_enrich.json_compact_bytes(item) -%}
        {%- endfor -%}
        {{- return(total.bytes) -}}
    {%- elif value is sequence -%}
        {%- set total = namespace(bytes=1 + [value | length, 1] | max) -%}
        {%- for item in value -%}
            {%- set total.bytes = total.bytes + batch_enrich.json_compact_bytes(item) -%}
        {%- endfor -%}
        {{- return(total.bytes) -}}
    {%- else -%}
        {{- return(tojson(value) | length) -}}
    {%- endif -%}
{%- endmacro %}


{#- Bytes of a text expression in UTF-8. -#}
{% macro text_byte_length(expression) -%}
    {{- return(adapter.dispatch('text_byte_length', 'batch_enrich')(expression)) -}}
{%- endmacro %}

{% macro default__text_byte_length(expression) -%}
    octet_length({{ expression }})
{%- endmacro %}

{% macro duckdb__text_byte_length(expression) -%}
    strlen({{ expression }})
{%- endmacro %}


{#- Bytes of a text expression inside a JSON string: UTF-8, plus one per escaped character. -#}
{% macro json_text_bytes(expression) -%}
    {{ batch_enrich.text_byte_length(expression) }}
    {%- for character in ["chr(34)", "chr(92)", "chr(10)", "chr(13)", "chr(9)"] %}
    + length({{ expression }}) - length(replace({{ expression }}, {{ character }}, ''))
    {%- endfor -%}
{%- endmacro %}


{% macro max_pending_usd_sql(
    decl, input_relation, parsed_relation, requests_relation, prices_relation, threshold, backlog_relation
) -%}
    {%- set name = batch_enrich.sql_text_literal(decl['name']) -%}
    {%- set threshold_text = ('%.6f' % threshold).rstrip('0').rstrip('.') -%}
    {%- set pk = decl['primary_key'] -%}
    {%- set prompt = batch_enrich.column_ref(decl['prompt_column'], 'flagged') -%}
    {%- if pk | length == 1 -%}
        {%- set key_bytes = batch_enrich.text_byte_length('cast(' ~ batch_enrich.column_ref(pk[0], 'flagged') ~ ' as text)') -%}
    {%- else -%}
        {#- a composite key's custom_id is 'be-' + 48 base32 characters -#}
        {%- set key_bytes = '51' -%}
    {%- endif -%}
with

flagged as (

    select
        {{ batch_enrich.request_fixed_bytes(decl) }}
        + coalesce({{ batch_enrich.json_text_bytes('cast(' ~ prompt ~ ' as text)') }}, 0)
        + coalesce({{ key_bytes }}, 0) as request_bytes,
        {%- if decl['dedupe'] %}
        row_number() over (partition by backlog.request_hash order by backlog.request_hash) as hash_rank
        {%- else %}
        1 as hash_rank
        {%- endif %}

    from {{ input_relation }} as flagged
    inner join {{ backlog_relation }} as backlog
        on
            backlog.enrichment = {{ name }}
            and backlog.key_text = {{ batch_enrich.backlog_key_text(decl, 'flagged') }}

),

parsed as (

    select * from {{ parsed_relation }}
    where enrichment = {{ name }} and result_type = 'succeeded' and input_tokens is not null
    order by landed_at desc, batch_id desc, custom_id desc
    limit 20000

),

requests as (

    select * from {{ requests_relation }}
    where enrichment = {{ name }}

),

prices as (

    select * from {{ prices_relation }}
    where model = {{ batch_enrich.sql_text_literal(decl['model']) }}

),

pending as (

    select
        count(*) as pending_requests,
        coalesce(sum(request_bytes), 0) as pending_bytes

    from flagged
    where hash_rank = 1

),

landed as (

    select
        count(*) as landed_requests,
        sum(requests.params_bytes) as landed_bytes,
        sum(
            parsed.input_tokens
            + coalesce(parsed.cache_creation_input_tokens, 0)
            + coalesce(parsed.cache_read_input_tokens, 0)
        ) as landed_input_tokens,
        avg(parsed.output_tokens) as average_output_tokens

    from parsed
    inner join requests
        on
            parsed.submission_id = requests.submission_id
            and parsed.custom_id = requests.custom_id

),

calibrated as (

    select
        pending.pending_requests,
        pending.pending_bytes,
        landed.landed_requests,
        case
            when landed.landed_input_tokens > 0
                then cast(landed.landed_bytes as double precision) / landed.landed_input_tokens
            else 4.0
        end as bytes_per_token,
        case
            when landed.landed_input_tokens > 0 then 'landed' else 'default'
        end as bytes_per_token_source,
        coalesce(landed.average_output_tokens, {{ batch_enrich.sql_number(decl['max_tokens']) }} / 2.0) as output_tokens_per_request

    from pending
    cross join landed

),

estimated as (

    select
        calibrated.*,
        prices.model as price_model,
        calibrated.pending_bytes / calibrated.bytes_per_token as estimated_input_tokens,
        calibrated.pending_requests * calibrated.output_tokens_per_request as estimated_output_tokens,
        (
            calibrated.pending_bytes / calibrated.bytes_per_token * prices.input_usd_per_mtok
            + calibrated.pending_requests * calibrated.output_tokens_per_request * prices.output_usd_per_mtok
        ) / 1000000.0 * (1 - prices.batch_discount) as estimated_usd

    from calibrated
    left join prices
        on true

),

final as (

    select
        {{ name }} as enrichment,
        {{ batch_enrich.sql_text_literal(decl['model']) }} as model,
        pending_requests,
        estimated_input_tokens,
        estimated_output_tokens,
        bytes_per_token,
        bytes_per_token_source,
        landed_requests,
        estimated_usd,
        {{ threshold }} as max_usd,
        case
            when price_model is null
                then {{ name }} || ': ' || cast(pending_requests as text)
                    || ' pending requests cannot be priced: no row for model '
                    || {{ batch_enrich.sql_text_literal(decl['model']) }} || ' in batch_enrich_model_prices'
            else {{ name }} || ': ' || cast(pending_requests as text)
                || ' pending requests estimated at $' || cast(cast(estimated_usd as numeric(20, 6)) as text)
                || ' at batch prices, over the threshold of $' || {{ batch_enrich.sql_text_literal(threshold_text) }}
        end as message

    from estimated
    where
        pending_requests > 0
        and (price_model is null or estimated_usd > {{ threshold }})

)

select * from final
{%- endmacro %}
