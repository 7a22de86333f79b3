with

source as (

    select * from {{ source('enrich_ledger', 'requests') }}

),

final as (

    select
        submission_id,
        custom_id,
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
        estimated_usd

    from source

)

select * from final
