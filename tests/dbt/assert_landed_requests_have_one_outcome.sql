{#-
    Every request of a landed batch has exactly one result line (one terminal outcome
    from the API). Fails with one row per offending batch: requests without a line
    (missing) or with more than one.
-#}
{{ config(severity=var('batch_enrich_reconciliation_severity', 'error')) }}

with

reconciliation as (

    select * from {{ ref('enrich_reconciliation') }}

),

final as (

    select
        submission_id,
        batch_id,
        enrichment,
        request_count,
        requests_without_line,
        requests_with_multiple_lines

    from reconciliation
    where
        batch_status = 'landed'
        and (requests_without_line > 0 or requests_with_multiple_lines > 0)

)

select * from final
