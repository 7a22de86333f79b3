{#-
    One row per landed result line, with the fields of the API's
    MessageBatchIndividualResponse pulled out. The line is parsed once per row
    (`join_json_once`); everything else is a path lookup into it.
-#}

with

source as (

    select * from {{ source('enrich_ledger', 'results_raw') }}

),

lines as (

    select
        source.batch_id,
        source.custom_id,
        source.result_type,
        source.landed_at,
        parsed_line.evaluated as line_json

    from source
    {{ batch_enrich.join_json_once('source.line', 'parsed_line') }}

),

final as (

    select
        batch_id,
        custom_id,
        result_type,
        {{ batch_enrich.json_get_text('line_json', ['result', 'type']) }} as line_result_type,
        {{ batch_enrich.json_get_text('line_json', ['custom_id']) }} as line_custom_id,
        {{ batch_enrich.json_get_text('line_json', ['result', 'message', 'id']) }} as message_id,
        {{ batch_enrich.json_get_text('line_json', ['result', 'message', 'model']) }} as response_model,
        {{ batch_enrich.json_get_text('line_json', ['result', 'message', 'stop_reason']) }} as stop_reason,
        {{ batch_enrich.json_concat_text_blocks(batch_enrich.json_get('line_json', ['result', 'message', 'content'])) }}
            as content_text,
        {{ batch_enrich.json_get_text(
            batch_enrich.json_first_block(batch_enrich.json_get('line_json', ['result', 'message', 'content']), 'tool_use'),
            ['name'],
        ) }} as tool_name,
        {{ batch_enrich.json_get(
            batch_enrich.json_first_block(batch_enrich.json_get('line_json', ['result', 'message', 'content']), 'tool_use'),
            ['input'],
        ) }} as tool_input,
        cast({{ batch_enrich.json_get_text('line_json', ['result', 'message', 'usage', 'input_tokens']) }} as bigint)
            as input_tokens,
        cast({{ batch_enrich.json_get_text('line_json', ['result', 'message', 'usage', 'output_tokens']) }} as bigint)
            as output_tokens,
        cast(
            {{ batch_enrich.json_get_text('line_json', ['result', 'message', 'usage', 'cache_creation_input_tokens']) }}
            as bigint
        ) as cache_creation_input_tokens,
        cast(
            {{ batch_enrich.json_get_text('line_json', ['result', 'message', 'usage', 'cache_read_input_tokens']) }}
            as bigint
        ) as cache_read_input_tokens,
        cast(
            {{ batch_enrich.json_get_text(
                'line_json', ['result', 'message', 'usage', 'cache_creation', 'ephemeral_5m_input_tokens'],
            ) }} as bigint
        ) as cache_creation_5m_input_tokens,
        cast(
            {{ batch_enrich.json_get_text(
                'line_json', ['result', 'message', 'usage', 'cache_creation', 'ephemeral_1h_input_tokens'],
            ) }} as bigint
        ) as cache_creation_1h_input_tokens,
        {{ batch_enrich.json_get_text('line_json', ['result', 'message', 'usage', 'service_tier']) }} as service_tier,
        {{ batch_enrich.json_get_text('line_json', ['result', 'error', 'error', 'type']) }} as error_type,
        {{ batch_enrich.json_get_text('line_json', ['result', 'error', 'error', 'message']) }} as error_message,
        {{ batch_enrich.json_get_text('line_json', ['result', 'error', 'request_id']) }} as error_request_id,
        landed_at

    from lines

)

select * from final
