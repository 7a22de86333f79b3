{#-
    One row per pilot (enrichment, model, prompt_version of requests with flag_reason
    'pilot') and field of enrich_pilot_comparison: how the pilot's rows came back
    (landed, valid, failed by type, in flight), what they cost, how often each field
    agrees with the live value, and what switching would cost now. Everything but the
    agreement columns is per pilot and repeats on each of its field rows.

    Landed rows are those whose latest pilot request has a result line (every outcome
    but in_flight, missing and lost); the token and cost means are over them (an
    errored, expired or canceled line is billed nothing). rows_to_switch is the
    enrichment's flagged rows (enrich_backlog.rows_flagged) when its current declaration
    is the pilot's model and prompt_version: what the next sync would send.
-#}

{%- set declarations = [] -%}
{%- if execute -%}
    {%- do declarations.extend(batch_enrich.valid_declarations()['valid']) -%}
{%- endif %}

with

comparison as (

    select * from {{ ref('enrich_pilot_comparison') }}

),

live_versions as (

    select * from {{ ref('int_enrich__live_versions') }}

),

backlog as (

    select * from {{ ref('enrich_backlog') }}

),

declared_versions as (

    {{ batch_enrich.declared_versions_table(declarations) | indent(4) }}

),

pilot_rows as (

    select
        *,
        pilot_outcome not in ('in_flight', 'missing', 'lost') as is_landed

    from comparison

),

field_stats as (

    select
        enrichment,
        pilot_model,
        pilot_prompt_version,
        field,
        count(*) as sampled_rows,
        sum(case when is_landed then 1 else 0 end) as landed_rows,
        sum(case when pilot_outcome = 'succeeded_valid' then 1 else 0 end) as valid_rows,
        sum(case when is_match is not null then 1 else 0 end) as compared_rows,
        sum(case when is_match then 1 else 0 end) as matching_rows,
        sum(case when pilot_failure_type = 'invalid' then 1 else 0 end) as failed_invalid,
        sum(case when pilot_failure_type = 'truncated' then 1 else 0 end) as failed_truncated,
        sum(case when pilot_failure_type = 'errored' then 1 else 0 end) as failed_errored,
        sum(case when pilot_failure_type = 'other' then 1 else 0 end) as failed_other,
        sum(case when pilot_outcome = 'in_flight' then 1 else 0 end) as in_flight_rows,
        avg(case when is_landed then cast(pilot_input_tokens as double precision) end) as mean_input_tokens,
        avg(case when is_landed then cast(pilot_output_tokens as double precision) end) as mean_output_tokens,
        avg(case when is_landed then pilot_total_usd end) as usd_per_row

    from pilot_rows
    group by enrichment, pilot_model, pilot_prompt_version, field

),

joined as (

    select
        field_stats.*,
        cast(field_stats.valid_rows as double precision) / nullif(field_stats.landed_rows, 0) as validity_rate,
        cast(field_stats.matching_rows as double precision) / nullif(field_stats.compared_rows, 0)
            as agreement_rate,
        live_versions.enrichment is not null as is_switched,
        declared_versions.enrichment is not null as is_current_declaration,
        case when declared_versions.enrichment is not null then coalesce(backlog.rows_flagged, 0) end
            as rows_to_switch

    from field_stats
    left join live_versions
        on
            field_stats.enrichment = live_versions.enrichment
            and field_stats.pilot_model = live_versions.model
            and field_stats.pilot_prompt_version = live_versions.prompt_version
    left join declared_versions
        on
            field_stats.enrichment = declared_versions.enrichment
            and field_stats.pilot_model = declared_versions.model
            and field_stats.pilot_prompt_version = declared_versions.prompt_version
    left join backlog
        on field_stats.enrichment = backlog.enrichment

),

final as (

    select
        enrichment,
        pilot_model,
        pilot_prompt_version,
        field,
        sampled_rows,
        landed_rows,
        valid_rows,
        validity_rate,
        compared_rows,
        matching_rows,
        agreement_rate,
        failed_invalid,
        failed_truncated,
        failed_errored,
        failed_other,
        in_flight_rows,
        mean_input_tokens,
        mean_output_tokens,
        usd_per_row,
        is_switched,
        is_current_declaration,
        rows_to_switch,
        usd_per_row * rows_to_switch as projected_switch_usd

    from joined

)

select * from final
