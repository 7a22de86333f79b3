{#-
    One row per (request, input key it serves). Every request serves its own key
    (is_shared_result false, member_custom_id = custom_id); with `dedupe: true`, a
    request also serves the keys of shared_keys, the rows whose identical request was
    not sent (is_shared_result true, with the member's own key and would-be custom_id).
    The flagged view and the enriched model key on this model; marts that count API
    requests read stg_enrich_ledger__requests instead.
-#}

with

requests as (

    select * from {{ ref('stg_enrich_ledger__requests') }}

),

shared_keys as (

    select * from {{ source('enrich_ledger', 'shared_keys') }}

),

own_keys as (

    select
        submission_id,
        custom_id,
        custom_id as member_custom_id,
        enrichment,
        primary_key,
        request_hash,
        input_hash,
        attempt,
        flag_reason,
        model,
        prompt_version,
        max_tokens,
        params_bytes,
        estimated_usd,
        false as is_shared_result

    from requests

),

member_keys as (

    select
        requests.submission_id,
        requests.custom_id,
        shared_keys.member_custom_id,
        requests.enrichment,
        shared_keys.primary_key,
        requests.request_hash,
        requests.input_hash,
        requests.attempt,
        requests.flag_reason,
        requests.model,
        requests.prompt_version,
        requests.max_tokens,
        requests.params_bytes,
        requests.estimated_usd,
        true as is_shared_result

    from shared_keys
    inner join requests
        on
            shared_keys.submission_id = requests.submission_id
            and shared_keys.custom_id = requests.custom_id

),

final as (

    select * from own_keys
    union all
    select * from member_keys

)

select * from final
