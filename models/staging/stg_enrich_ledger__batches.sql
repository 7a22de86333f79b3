with

source as (

    select * from {{ source('enrich_ledger', 'batches') }}

),

final as (

    select
        submission_id,
        batch_id,
        enrichment,
        status as batch_status,
        processing_status,
        request_count,
        body_bytes,
        succeeded_count,
        errored_count,
        canceled_count,
        expired_count,
        landed_lines,
        note,
        intent_at,
        submitted_at,
        api_created_at,
        expires_at,
        ended_at,
        landed_at,
        last_polled_at,
        status in ('submitting', 'submitted', 'ended') as is_in_flight,
        status in ('results_lost', 'abandoned') as is_lost

    from source

)

select * from final
