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
        {%- for reason in batch_enrich.backlog_flag_reasons() %}
        sum(case when flag_reason = '{{ reason }}' then 1 else 0 end) as rows_flagged_{{ reason }},
        {%- endfor %}
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

final as (

    select
        enrichments.enrichment,
        coalesce(flagged.rows_flagged, 0) as rows_flagged,
        {%- for reason in batch_enrich.backlog_flag_reasons() %}
        coalesce(flagged.rows_flagged_{{ reason }}, 0) as rows_flagged_{{ reason }},
        {%- endfor %}
        flagged.oldest_flagged_at,
        {{ batch_enrich.hours_between('flagged.oldest_flagged_at', 'current_timestamp') }} as oldest_flagged_age_hours,
        coalesce(in_flight.rows_in_flight, 0) as rows_in_flight,
        coalesce(in_flight.requests_in_flight, 0) as requests_in_flight,
        in_flight.oldest_in_flight_at,
        {{ batch_enrich.hours_between('in_flight.oldest_in_flight_at', 'current_timestamp') }} as oldest_in_flight_age_hours,
        cast(current_timestamp as timestamp with time zone) as computed_at

    from enrichments
    left join flagged
        on enrichments.enrichment = flagged.enrichment
    left join in_flight
        on enrichments.enrichment = in_flight.enrichment

)

select * from final
