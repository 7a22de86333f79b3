{#-
    One row per enrichment (every valid declaration, and any enrichment with requests
    in flight): the rows its flagged view selects, by reason, and how long the oldest
    has waited (enrich_backlog_rows); the rows in flight (a request of theirs, or with
    dedupe the request whose result they share, in a batch submitting, submitted or
    ended) and how long ago the oldest was sent. Ages are in hours at computed_at, the
    build's time. The generic test batch_enrich.backlog_age warns or fails on them.
-#}

{%- set declarations = [] -%}
{%- if execute -%}
    {%- do declarations.extend(batch_enrich.valid_declarations()['valid']) -%}
{%- endif %}

with

declarations as (

    {{ batch_enrich.declarations_table(declarations) | indent(4) }}

),

backlog_rows as (

    select * from {{ ref('enrich_backlog_rows') }}

),

request_keys as (

    select * from {{ ref('stg_enrich_ledger__request_keys') }}

),

batches as (

    select * from {{ ref('stg_enrich_ledger__batches') }}

),

flagged as (

    select
        enrichment,
        count(*) as rows_flagged,
        sum(case when flag_reason = 'new' then 1 else 0 end) as rows_flagged_new,
        sum(case when flag_reason = 'input_changed' then 1 else 0 end) as rows_flagged_input_changed,
        sum(case when flag_reason = 'prompt_changed' then 1 else 0 end) as rows_flagged_prompt_changed,
        sum(case when flag_reason = 'model_changed' then 1 else 0 end) as rows_flagged_model_changed,
        sum(case when flag_reason = 'retry' then 1 else 0 end) as rows_flagged_retry,
        sum(case when flag_reason = 'repair' then 1 else 0 end) as rows_flagged_repair,
        min(first_flagged_at) as oldest_flagged_at

    from backlog_rows
    group by enrichment

),

in_flight as (

    select
        request_keys.enrichment,
        count(distinct request_keys.member_custom_id) as rows_in_flight,
        count(distinct request_keys.submission_id || '/' || request_keys.custom_id) as requests_in_flight,
        min(batches.intent_at) as oldest_in_flight_at

    from request_keys
    inner join batches
        on request_keys.submission_id = batches.submission_id
    where batches.is_in_flight
    group by request_keys.enrichment

),

enrichments as (

    select enrichment from declarations
    union
    select enrichment from in_flight

),

joined as (

    select
        enrichments.enrichment,
        flagged.oldest_flagged_at,
        in_flight.oldest_in_flight_at,
        cast(current_timestamp as timestamp with time zone) as computed_at,
        coalesce(flagged.rows_flagged, 0) as rows_flagged,
        coalesce(flagged.rows_flagged_new, 0) as rows_flagged_new,
        coalesce(flagged.rows_flagged_input_changed, 0) as rows_flagged_input_changed,
        coalesce(flagged.rows_flagged_prompt_changed, 0) as rows_flagged_prompt_changed,
        coalesce(flagged.rows_flagged_model_changed, 0) as rows_flagged_model_changed,
        coalesce(flagged.rows_flagged_retry, 0) as rows_flagged_retry,
        coalesce(flagged.rows_flagged_repair, 0) as rows_flagged_repair,
        coalesce(in_flight.rows_in_flight, 0) as rows_in_flight,
        coalesce(in_flight.requests_in_flight, 0) as requests_in_flight

    from enrichments
    left join flagged
        on enrichments.enrichment = flagged.enrichment
    left join in_flight
        on enrichments.enrichment = in_flight.enrichment

),

final as (

    select
        enrichment,
        rows_flagged,
        rows_flagged_new,
        rows_flagged_input_changed,
        rows_flagged_prompt_changed,
        rows_flagged_model_changed,
        rows_flagged_retry,
        rows_flagged_repair,
        oldest_flagged_at,
        {{ batch_enrich.hours_between('oldest_flagged_at', 'computed_at') }} as oldest_flagged_age_hours,
        rows_in_flight,
        requests_in_flight,
        oldest_in_flight_at,
        {{ batch_enrich.hours_between('oldest_in_flight_at', 'computed_at') }} as oldest_in_flight_age_hours,
        computed_at

    from joined

)

select * from final
