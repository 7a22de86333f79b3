{#-
    Every valid output ever landed, per enrichment and request; is_current marks the
    latest valid output of the request's own key, among every live output that served
    that key (with dedupe, a result shared from another row's request counts too). A key
    is identified by its own custom_id, which is deterministic per key. A pilot output
    (is_pilot) is a row like any other, but competes for is_current only once its
    version is switched to (int_enrich__live_versions), as in the enriched tables.
-#}

with

validated as (

    select * from {{ ref('int_enrich__results_validated') }}

),

request_keys as (

    select * from {{ ref('stg_enrich_ledger__request_keys') }}

),

live_versions as (

    select * from {{ ref('int_enrich__live_versions') }}

),

valid_outputs as (

    select
        validated.*,
        {{ batch_enrich.json_to_text('validated.primary_key') }} as primary_key_text,
        {{ batch_enrich.is_pilot('validated.flag_reason') }} as is_pilot,
        {{ batch_enrich.is_live('validated.flag_reason', 'live_versions') }} as is_live

    from validated
    left join live_versions
        on
            validated.enrichment = live_versions.enrichment
            and validated.request_model = live_versions.model
            and validated.prompt_version = live_versions.prompt_version
    where validated.is_valid

),

key_outputs as (

    select
        valid_outputs.batch_id,
        valid_outputs.custom_id,
        request_keys.is_shared_result,
        row_number() over (
            partition by request_keys.enrichment, request_keys.member_custom_id
            order by valid_outputs.landed_at desc, valid_outputs.attempt desc, valid_outputs.batch_id desc
        ) as recency_rank

    from valid_outputs
    inner join request_keys
        on
            valid_outputs.submission_id = request_keys.submission_id
            and valid_outputs.custom_id = request_keys.custom_id
    where valid_outputs.is_live

),

current_outputs as (

    select
        batch_id,
        custom_id

    from key_outputs
    where
        recency_rank = 1
        and not is_shared_result

),

final as (

    select
        valid_outputs.batch_id,
        valid_outputs.custom_id,
        valid_outputs.enrichment,
        valid_outputs.primary_key,
        valid_outputs.primary_key_text,
        valid_outputs.request_hash,
        valid_outputs.prompt_version,
        valid_outputs.request_model as model,
        valid_outputs.response_model,
        valid_outputs.attempt,
        valid_outputs.flag_reason,
        valid_outputs.output_json,
        valid_outputs.content_text,
        valid_outputs.landed_at,
        valid_outputs.is_pilot,
        current_outputs.custom_id is not null as is_current

    from valid_outputs
    left join current_outputs
        on
            valid_outputs.batch_id = current_outputs.batch_id
            and valid_outputs.custom_id = current_outputs.custom_id

)

select * from final
