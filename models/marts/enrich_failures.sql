{#-
    Every request that did not end in a valid output: errored, expired, canceled,
    invalid, truncated, missing or lost, with the reason, the key, the batch and the
    attempt, and whether a later request for the same key has since succeeded.
-#}

with

outcomes as (

    select * from {{ ref('int_enrich__request_outcomes') }}

),

keyed as (

    select
        *,
        {{ batch_enrich.json_to_text('primary_key') }} as primary_key_text

    from outcomes

),

with_resolution as (

    select
        *,
        max(case when outcome = 'succeeded_valid' then intent_at end) over (
            partition by enrichment, primary_key_text
        ) as last_success_intent_at

    from keyed

),

final as (

    select
        submission_id,
        custom_id,
        batch_id,
        enrichment,
        primary_key,
        primary_key_text,
        request_hash,
        attempt,
        flag_reason,
        model,
        prompt_version,
        max_tokens,
        outcome as failure_type,
        error_type,
        stop_reason,
        is_retryable,
        is_repairable,
        intent_at,
        landed_at,
        coalesce(outcome_reason, outcome) as failure_reason,
        coalesce(last_success_intent_at > intent_at, false) as is_resolved_later

    from with_resolution
    where outcome in (
        'errored_retryable',
        'errored_terminal',
        'expired',
        'canceled',
        'succeeded_invalid',
        'truncated',
        'missing',
        'lost'
    )

)

select * from final
