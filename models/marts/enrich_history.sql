{#- Every valid output ever landed, per enrichment and key; is_current marks the latest. -#}

with

validated as (

    select * from {{ ref('int_enrich__results_validated') }}

),

valid_outputs as (

    select
        *,
        {{ batch_enrich.json_to_text('primary_key') }} as primary_key_text

    from validated
    where is_valid

),

ranked as (

    select
        *,
        row_number() over (
            partition by enrichment, primary_key_text
            order by landed_at desc, attempt desc, batch_id desc
        ) as recency_rank

    from valid_outputs

),

final as (

    select
        batch_id,
        custom_id,
        enrichment,
        primary_key,
        primary_key_text,
        request_hash,
        prompt_version,
        request_model as model,
        response_model,
        attempt,
        flag_reason,
        output_json,
        content_text,
        landed_at,
        recency_rank = 1 as is_current

    from ranked

)

select * from final
