{#-
    One row per batch: what the ledger says it submitted, what the API says it ended
    with, the lines that landed, and the requests that have an outcome. A landed batch
    is reconciled when all of them agree and every request has exactly one result line.

    Incremental: a build counts again the batches whose ledger row changed since its
    last one, or that hold a request whose outcome changed (macros/incremental.sql).
-#}

{{ batch_enrich.incremental_config('enrich_reconciliation', ['submission_id']) }}
{%- set since = batch_enrich.model_since('enrich_reconciliation') %}
{%- set batch_columns = [
    'batch_id', 'enrichment', 'batch_status', 'processing_status', 'request_count', 'succeeded_count',
    'errored_count', 'canceled_count', 'expired_count', 'landed_lines', 'intent_at', 'landed_at',
] %}

with

all_batches as (

    select * from {{ ref('stg_enrich_ledger__batches') }}

),

all_outcomes as (

    select * from {{ ref('int_enrich__request_outcomes') }}

),

{% if since is not none %}
    touched_batches as (

        select all_batches.submission_id
        from all_batches
        left join {{ this }} as previous
            on all_batches.submission_id = previous.submission_id
        where
            previous.submission_id is null
            or {{ batch_enrich.rows_differ(batch_columns, 'all_batches', 'previous') }}

        union

        select submission_id
        from all_outcomes
        where changed_at > {{ since }}

    ),

    batches as (

        select all_batches.*
        from all_batches
        inner join touched_batches
            on all_batches.submission_id = touched_batches.submission_id

    ),

    requests as (

        select requests.*
        from {{ ref('stg_enrich_ledger__requests') }} as requests
        inner join touched_batches
            on requests.submission_id = touched_batches.submission_id

    ),

    landed_lines as (

        select
            results_raw.batch_id,
            results_raw.custom_id,
            results_raw.result_type
        from {{ ref('stg_enrich_ledger__results_raw') }} as results_raw
        inner join batches
            on results_raw.batch_id = batches.batch_id

    ),

    outcomes as (

        select all_outcomes.*
        from all_outcomes
        inner join touched_batches
            on all_outcomes.submission_id = touched_batches.submission_id

    ),
{% else %}
    batches as (

        select * from all_batches

    ),

    requests as (

        select * from {{ ref('stg_enrich_ledger__requests') }}

    ),

    landed_lines as (

        {#- Only the columns used: this CTE is read twice, so Postgres materializes it, and
            `select *` would extract every JSON field of every line. -#}
        select
            batch_id,
            custom_id,
            result_type
        from {{ ref('stg_enrich_ledger__results_raw') }}

    ),

    outcomes as (

        select * from all_outcomes

    ),
{% endif %}

request_lines as (

    select
        requests.submission_id,
        requests.custom_id,
        count(landed_lines.custom_id) as line_count

    from requests
    inner join batches
        on requests.submission_id = batches.submission_id
    left join landed_lines
        on
            batches.batch_id = landed_lines.batch_id
            and requests.custom_id = landed_lines.custom_id
    group by requests.submission_id, requests.custom_id

),

request_line_counts as (

    select
        submission_id,
        count(*) as ledger_request_rows,
        sum(case when line_count = 0 then 1 else 0 end) as requests_without_line,
        sum(case when line_count > 1 then 1 else 0 end) as requests_with_multiple_lines

    from request_lines
    group by submission_id

),

line_counts as (

    select
        landed_lines.batch_id,
        count(*) as line_count,
        sum(case when landed_lines.result_type = 'succeeded' then 1 else 0 end) as succeeded_lines,
        sum(case when landed_lines.result_type = 'errored' then 1 else 0 end) as errored_lines,
        sum(case when landed_lines.result_type = 'canceled' then 1 else 0 end) as canceled_lines,
        sum(case when landed_lines.result_type = 'expired' then 1 else 0 end) as expired_lines,
        sum(case when requests.custom_id is null then 1 else 0 end) as lines_without_request

    from landed_lines
    left join batches
        on landed_lines.batch_id = batches.batch_id
    left join requests
        on
            batches.submission_id = requests.submission_id
            and landed_lines.custom_id = requests.custom_id
    group by landed_lines.batch_id

),

outcome_counts as (

    select
        submission_id,
        count(distinct case when outcome <> 'in_flight' then custom_id end) as requests_with_outcome,
        sum(case when outcome = 'succeeded_valid' then 1 else 0 end) as succeeded_valid_count,
        sum(case when outcome = 'missing' then 1 else 0 end) as missing_count

    from outcomes
    group by submission_id

),

joined as (

    select
        batches.submission_id,
        batches.batch_id,
        batches.enrichment,
        batches.batch_status,
        batches.processing_status,
        batches.request_count,
        batches.succeeded_count,
        batches.errored_count,
        batches.canceled_count,
        batches.expired_count,
        batches.landed_lines,
        batches.intent_at,
        batches.landed_at,
        coalesce(request_line_counts.ledger_request_rows, 0) as ledger_request_rows,
        batches.succeeded_count + batches.errored_count + batches.canceled_count + batches.expired_count
            as api_result_count,
        coalesce(line_counts.line_count, 0) as line_count,
        coalesce(line_counts.succeeded_lines, 0) as succeeded_lines,
        coalesce(line_counts.errored_lines, 0) as errored_lines,
        coalesce(line_counts.canceled_lines, 0) as canceled_lines,
        coalesce(line_counts.expired_lines, 0) as expired_lines,
        coalesce(line_counts.lines_without_request, 0) as lines_without_request,
        coalesce(request_line_counts.requests_without_line, 0) as requests_without_line,
        coalesce(request_line_counts.requests_with_multiple_lines, 0) as requests_with_multiple_lines,
        coalesce(outcome_counts.requests_with_outcome, 0) as requests_with_outcome,
        coalesce(outcome_counts.succeeded_valid_count, 0) as succeeded_valid_count

    from batches
    left join request_line_counts
        on batches.submission_id = request_line_counts.submission_id
    left join line_counts
        on batches.batch_id = line_counts.batch_id
    left join outcome_counts
        on batches.submission_id = outcome_counts.submission_id

),

final as (

    select
        *,
        coalesce(
            batch_status = 'landed'
            and ledger_request_rows = request_count
            and api_result_count = request_count
            and line_count = request_count
            and landed_lines = line_count
            and requests_with_outcome = request_count
            and requests_without_line = 0
            and requests_with_multiple_lines = 0
            and lines_without_request = 0
            and succeeded_lines = succeeded_count
            and errored_lines = errored_count
            and canceled_lines = canceled_count
            and expired_lines = expired_count,
            false
        ) as is_reconciled

    from joined

)

select * from final
