{#-
    One row per (enrichment, model, prompt_version) that non-pilot requests use: the
    versions a sync has sent. A pilot (requests with flag_reason 'pilot') is switched to
    once its version is here; the "current value" models read only live requests, those
    that are not pilots or whose version is here (macros/pilot.sql).
-#}

with

requests as (

    select * from {{ ref('stg_enrich_ledger__requests') }}

),

batches as (

    select * from {{ ref('stg_enrich_ledger__batches') }}

),

live_requests as (

    select
        requests.enrichment,
        requests.model,
        requests.prompt_version,
        batches.intent_at

    from requests
    left join batches
        on requests.submission_id = batches.submission_id
    where not {{ batch_enrich.is_pilot('requests.flag_reason') }}

),

final as (

    select
        enrichment,
        model,
        prompt_version,
        min(intent_at) as first_intent_at,
        count(*) as request_count

    from live_requests
    group by enrichment, model, prompt_version

)

select * from final
