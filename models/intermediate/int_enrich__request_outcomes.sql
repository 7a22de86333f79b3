{#-
    One row per ledger request with its outcome:
      in_flight          batch submitting/submitted/ended, or its line landed after the
                         parse models ran (the next build classifies it)
      succeeded_valid    succeeded and passed validation
      succeeded_invalid  succeeded, failed validation (repairable if repair.on_invalid)
      truncated          succeeded with stop_reason max_tokens (repairable if repair.on_max_tokens)
      errored_retryable  errored with any error type but invalid_request_error
      errored_terminal   errored with invalid_request_error (not retried until the request changes)
      expired            the batch expired before the request ran (retryable)
      canceled           the batch was canceled before the request ran (retryable)
      missing            the batch landed without a line for this custom_id (retryable)
      lost               the batch is results_lost or abandoned (retryable)
-#}

with

requests as (

    select * from {{ ref('stg_enrich_ledger__requests') }}

),

batches as (

    select * from {{ ref('stg_enrich_ledger__batches') }}

),

landed_lines as (

    select * from {{ ref('stg_enrich_ledger__results_raw') }}

),

validated as (

    select * from {{ ref('int_enrich__results_validated') }}

),

joined as (

    select
        requests.submission_id,
        requests.custom_id,
        batches.batch_id,
        requests.enrichment,
        requests.primary_key,
        requests.request_hash,
        requests.input_hash,
        requests.attempt,
        requests.flag_reason,
        requests.model,
        requests.prompt_version,
        requests.max_tokens,
        batches.batch_status,
        batches.note as batch_note,
        batches.intent_at,
        validated.result_type,
        validated.stop_reason,
        validated.error_type,
        validated.is_valid,
        validated.invalid_reason,
        landed_lines.landed_at,
        coalesce(batches.is_in_flight, false) as is_batch_in_flight,
        coalesce(batches.is_lost, batches.submission_id is null) as is_batch_lost,
        landed_lines.custom_id is not null as has_line,
        validated.custom_id is not null as has_validated_result

    from requests
    left join batches
        on requests.submission_id = batches.submission_id
    left join landed_lines
        on
            batches.batch_id = landed_lines.batch_id
            and requests.custom_id = landed_lines.custom_id
    left join validated
        on
            batches.batch_id = validated.batch_id
            and requests.custom_id = validated.custom_id

),

classified as (

    select
        *,
        case
            when has_line and not has_validated_result then 'in_flight'
            when has_line and result_type = 'succeeded' and stop_reason = 'max_tokens' then 'truncated'
            when has_line and result_type = 'succeeded' and is_valid then 'succeeded_valid'
            when has_line and result_type = 'succeeded' then 'succeeded_invalid'
            when has_line and result_type = 'errored' and error_type = 'invalid_request_error'
                then 'errored_terminal'
            when has_line and result_type = 'errored' then 'errored_retryable'
            when has_line and result_type = 'expired' then 'expired'
            when has_line and result_type = 'canceled' then 'canceled'
            when is_batch_in_flight then 'in_flight'
            when batch_status = 'landed' then 'missing'
            when is_batch_lost then 'lost'
            else 'in_flight'
        end as outcome

    from joined

),

final as (

    select
        submission_id,
        custom_id,
        batch_id,
        enrichment,
        primary_key,
        request_hash,
        input_hash,
        attempt,
        flag_reason,
        model,
        prompt_version,
        max_tokens,
        batch_status,
        outcome,
        error_type,
        stop_reason,
        intent_at,
        landed_at,
        case
            when outcome = 'missing' then 'the batch landed without a result line for this custom_id'
            when outcome = 'lost'
                then
                    'batch ' || coalesce(batch_status, 'row missing from the ledger')
                    || coalesce(': ' || batch_note, '')
            when outcome in ('in_flight', 'succeeded_valid') then null
            else invalid_reason
        end as outcome_reason,
        outcome <> 'in_flight' as is_settled,
        outcome in ('errored_retryable', 'expired', 'canceled', 'missing', 'lost') as is_retryable,
        outcome in ('truncated', 'succeeded_invalid') as is_repairable

    from classified

)

select * from final
