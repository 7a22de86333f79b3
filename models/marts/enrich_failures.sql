{#-
    Every request that did not end in a valid output: errored, expired, canceled,
    invalid, truncated, missing or lost, with the reason, the key, the batch and the
    attempt, and whether a later request for the same key has since succeeded (its own
    request, or with dedupe another row's request whose result it shared). A key is
    identified by its own custom_id, which is deterministic per key.

    Incremental: a build looks again at the requests of the keys that a request whose
    outcome changed since its last one served (their failure, or whether a later request
    resolved it), macros/incremental.sql.
-#}

{{ batch_enrich.incremental_config('enrich_failures', ['submission_id', 'custom_id']) }}
{%- set since = batch_enrich.model_since('enrich_failures') %}

with

all_outcomes as (

    select * from {{ ref('int_enrich__request_outcomes') }}

),

all_request_keys as (

    select * from {{ ref('stg_enrich_ledger__request_keys') }}

),

{% if since is not none %}
    touched_keys as (

        {{ batch_enrich.changed_keys_sql(since) | indent(8) }}

    ),

    {#- a key's own requests: its custom_id is its requests' (deterministic per key) #}
    outcomes as (

        select all_outcomes.*
        from all_outcomes
        inner join touched_keys
            on
                all_outcomes.enrichment = touched_keys.enrichment
                and all_outcomes.custom_id = touched_keys.member_custom_id

    ),

    request_keys as (

        select all_request_keys.*
        from all_request_keys
        inner join touched_keys
            on
                all_request_keys.enrichment = touched_keys.enrichment
                and all_request_keys.member_custom_id = touched_keys.member_custom_id

    ),
{% else %}
    outcomes as (

        select * from all_outcomes

    ),

    request_keys as (

        select * from all_request_keys

    ),
{% endif %}

key_successes as (

    select
        request_keys.enrichment,
        request_keys.member_custom_id,
        max(outcomes.intent_at) as last_success_intent_at

    from request_keys
    inner join all_outcomes as outcomes
        on
            request_keys.submission_id = outcomes.submission_id
            and request_keys.custom_id = outcomes.custom_id
    where outcomes.outcome = 'succeeded_valid'
    group by request_keys.enrichment, request_keys.member_custom_id

),

with_resolution as (

    select
        outcomes.*,
        {{ batch_enrich.json_to_text('outcomes.primary_key') }} as primary_key_text,
        key_successes.last_success_intent_at

    from outcomes
    left join key_successes
        on
            outcomes.enrichment = key_successes.enrichment
            and outcomes.custom_id = key_successes.member_custom_id

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

{% if since is not none %}
    {{ batch_enrich.replaced_partitions('outcomes', 'final', ['submission_id', 'custom_id']) }}
{% else %}
    select * from final
{% endif %}
