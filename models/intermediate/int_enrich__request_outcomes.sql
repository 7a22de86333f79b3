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

    Incremental (macros/incremental.sql): a build reclassifies the requests that can have
    changed since its last one (those it classified in flight, those of batches it has
    not seen, those whose result was validated since, those whose shared keys changed)
    and writes the rows that did change, stamped changed_at: the marts downstream read
    the rows changed since their own last build.
-#}

{{ batch_enrich.incremental_config(
    'int_enrich__request_outcomes',
    ['submission_id', 'custom_id'],
    indexes=[['changed_at'], ['outcome']],
) }}
{%- set since = batch_enrich.model_since('int_enrich__request_outcomes') %}

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

shared_counts as (

    select
        submission_id,
        custom_id,
        count(*) as shared_key_count

    from {{ ref('stg_enrich_ledger__request_keys') }}
    where is_shared_result
    group by submission_id, custom_id

),

{% if since is not none %}
    previous as (

        select * from {{ this }}

    ),

    {#- The requests whose outcome can have changed since the last build. #}
    candidates as (

        {#- classified in flight: their batch may have ended, landed or been lost since #}
        select
            submission_id,
            custom_id
        from previous
        where outcome = 'in_flight'

        union

        {#- of batches not seen yet (a batch's requests are recorded with it, in one
            transaction; a request without a batch row is not looked for: the ledger's
            foreign key, or on DuckDB the connector, rules it out) #}
        select
            requests.submission_id,
            requests.custom_id
        from requests
        inner join batches
            on requests.submission_id = batches.submission_id
        where not exists (
            select 1
            from previous
            where previous.submission_id = batches.submission_id
        )

        union

        {#- (re)validated since: a new line, or a changed declaration #}
        select
            submission_id,
            custom_id
        from validated
        where validated_at > {{ since }} and submission_id is not null

        union

        {#- keys that share its result were added (dedupe across runs) #}
        select
            shared_counts.submission_id,
            shared_counts.custom_id
        from shared_counts
        left join previous
            on
                shared_counts.submission_id = previous.submission_id
                and shared_counts.custom_id = previous.custom_id
        where previous.shared_by is distinct from shared_counts.shared_key_count + 1

    ),

    scoped_requests as (

        select requests.*
        from requests
        inner join candidates
            on
                requests.submission_id = candidates.submission_id
                and requests.custom_id = candidates.custom_id

    ),
{% else %}
    scoped_requests as (

        select * from requests

    ),
{% endif %}

joined as (

    select
        scoped_requests.submission_id,
        scoped_requests.custom_id,
        batches.batch_id,
        scoped_requests.enrichment,
        scoped_requests.primary_key,
        scoped_requests.request_hash,
        scoped_requests.input_hash,
        scoped_requests.attempt,
        scoped_requests.flag_reason,
        scoped_requests.model,
        scoped_requests.prompt_version,
        scoped_requests.max_tokens,
        batches.batch_status,
        batches.note as batch_note,
        batches.intent_at,
        validated.result_type,
        validated.stop_reason,
        validated.error_type,
        validated.is_valid,
        validated.invalid_reason,
        landed_lines.landed_at,
        coalesce(shared_counts.shared_key_count, 0) + 1 as shared_by,
        coalesce(batches.is_in_flight, false) as is_batch_in_flight,
        coalesce(batches.is_lost, batches.submission_id is null) as is_batch_lost,
        landed_lines.custom_id is not null as has_line,
        validated.custom_id is not null as has_validated_result

    from scoped_requests
    left join batches
        on scoped_requests.submission_id = batches.submission_id
    left join landed_lines
        on
            batches.batch_id = landed_lines.batch_id
            and scoped_requests.custom_id = landed_lines.custom_id
    left join validated
        on
            batches.batch_id = validated.batch_id
            and scoped_requests.custom_id = validated.custom_id
    left join shared_counts
        on
            scoped_requests.submission_id = shared_counts.submission_id
            and scoped_requests.custom_id = shared_counts.custom_id

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

computed as (

    select
        submission_id,
        custom_id,
        shared_by,
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

),

{%- set compared = [
    'batch_id', 'batch_status', 'outcome', 'error_type', 'stop_reason', 'intent_at', 'landed_at',
    'outcome_reason', 'shared_by',
] %}
{#- a row keeps its stamp unless it changed #}
{%- set changed_at = batch_enrich.build_stamp() %}
{%- if since is not none %}
    {%- set changed_at = 'case when ' ~ batch_enrich.rows_differ(compared, 'computed', 'previous') ~ ' then '
        ~ changed_at ~ ' else previous.changed_at end' %}
{%- endif %}

stamped as (

    select
        computed.*,
        {{ changed_at }} as changed_at

    from computed
    {%- if since is not none %}
    left join previous
        on
            computed.submission_id = previous.submission_id
            and computed.custom_id = previous.custom_id
    {%- endif %}

)

select * from stamped
{%- if since is not none %}
{#- only the rows that changed are replaced #}
where changed_at = {{ batch_enrich.build_stamp() }}
{% endif %}
