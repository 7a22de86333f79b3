{#-
    One row per result line, joined to the ledger request it answers (through the
    batch's submission_id), with the model's output parsed: the first tool_use block's
    input when there is one, otherwise the text content parsed as JSON. Text that is not
    JSON never fails the model: output_json is null and has_json_parse_error is true.
    Incremental on landed_at.
-#}

{{ config(indexes=batch_enrich.key_indexes([['batch_id', 'custom_id'], ['landed_at']])) }}

with

results as (

    select results_raw.* from {{ ref('stg_enrich_ledger__results_raw') }} as results_raw
    {% if is_incremental() %}
        {# Lines are immutable: within the lookback window, only the ones not parsed yet. #}
        where
            results_raw.landed_at >= {{ batch_enrich.incremental_cutoff(this) }}
            and not exists (
                select 1
                from {{ this }} as parsed_before
                where
                    parsed_before.batch_id = results_raw.batch_id
                    and parsed_before.custom_id = results_raw.custom_id
            )
    {% endif %}

),

batches as (

    select * from {{ ref('stg_enrich_ledger__batches') }}

),

requests as (

    select * from {{ ref('stg_enrich_ledger__requests') }}

),

{# The submission of each line's batch (batches.batch_id is unique), looked up per line
   rather than joined, so that Postgres can then fetch each request through the
   ledger's (submission_id, custom_id) key when only a few lines are new. #}
with_batches as (

    select
        results.*,
        (
            select batches.submission_id
            from batches
            where batches.batch_id = results.batch_id
        ) as batch_submission_id

    from results

),

with_requests as (

    select
        with_batches.*,
        requests.submission_id,
        requests.enrichment,
        requests.primary_key,
        requests.request_hash,
        requests.input_hash,
        requests.attempt,
        requests.flag_reason,
        requests.model as request_model,
        requests.prompt_version,
        requests.max_tokens as request_max_tokens,
        requests.submission_id is not null as has_request

    from with_batches
    left join requests
        on
            with_batches.batch_submission_id = requests.submission_id
            and with_batches.custom_id = requests.custom_id

),

with_text_json as (

    select
        with_requests.*,
        text_json.evaluated as text_json

    from with_requests
    {{ batch_enrich.join_evaluated_once(
        "case when with_requests.tool_name is null and with_requests.content_text is not null then "
        ~ batch_enrich.try_parse_json('with_requests.content_text') ~ " end",
        'text_json',
    ) }}

),

final as (

    select
        batch_id,
        custom_id,
        submission_id,
        enrichment,
        primary_key,
        request_hash,
        input_hash,
        attempt,
        flag_reason,
        request_model,
        prompt_version,
        request_max_tokens,
        result_type,
        stop_reason,
        response_model,
        message_id,
        content_text,
        tool_name,
        error_type,
        error_message,
        input_tokens,
        output_tokens,
        cache_creation_input_tokens,
        cache_read_input_tokens,
        cache_creation_5m_input_tokens,
        cache_creation_1h_input_tokens,
        service_tier,
        landed_at,
        has_request,
        case
            when tool_name is not null then 'tool_use'
            when content_text is not null then 'text'
        end as output_source,
        coalesce(tool_input, text_json) as output_json,
        tool_name is null and content_text is not null and text_json is null as has_json_parse_error

    from with_text_json

)

select * from final
