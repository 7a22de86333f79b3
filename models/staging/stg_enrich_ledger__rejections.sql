with

source as (

    select * from {{ source('enrich_ledger', 'rejections') }}

),

final as (

    select
        enrichment,
        primary_key,
        reason as rejection_reason,
        seen_at

    from source

)

select * from final
