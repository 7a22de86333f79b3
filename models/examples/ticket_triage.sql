{#- Input model of the ticket_triage enrichment: one row per ticket, with the prompt. -#}
{{ config(enabled=var('batch_enrich_examples', project_name == 'batch_enrich')) }}

with

tickets as (

    select * from {{ ref('example_support_tickets') }}

),

final as (

    select
        ticket_id,
        customer,
        subject,
        body,
        created_at,
        'Subject: ' || subject || chr(10) || chr(10) || body as prompt

    from tickets

)

select * from final
