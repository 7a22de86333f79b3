{#-
    Spend per enrichment, prompt_version and day (the day results landed, in the session
    time zone).

    Incremental: a build sums again the days (of an enrichment and prompt_version) of the
    requests whose outcome changed since its last one; every day when the price seed
    changed (macros/incremental.sql).
-#}

-- depends_on: {{ ref('int_enrich__request_outcomes') }}
{{ batch_enrich.incremental_config('enrich_costs_daily', ['enrichment', 'prompt_version', 'cost_date']) }}
{%- set since = batch_enrich.model_since('enrich_costs_daily') %}

with

costs as (

    select * from {{ ref('enrich_costs') }}

),

{% if since is not none %}
    changed_outcomes as (

        select
            submission_id,
            custom_id
        from {{ ref('int_enrich__request_outcomes') }}
        where changed_at > {{ since }}

    ),

    touched_days as (

        select distinct
            costs.enrichment,
            costs.prompt_version,
            costs.cost_date
        from costs
        inner join changed_outcomes
            on
                costs.submission_id = changed_outcomes.submission_id
                and costs.custom_id = changed_outcomes.custom_id
        where costs.cost_date is not null

    ),

    landed as (

        select costs.*
        from costs
        inner join touched_days
            on
                costs.enrichment = touched_days.enrichment
                and costs.prompt_version = touched_days.prompt_version
                and costs.cost_date = touched_days.cost_date

    ),
{% else %}
    landed as (

        select * from costs
        where cost_date is not null

    ),
{% endif %}

final as (

    select
        enrichment,
        prompt_version,
        cost_date,
        count(*) as result_count,
        sum(case when outcome in ('succeeded_valid', 'succeeded_invalid', 'truncated') then 1 else 0 end)
            as succeeded_count,
        sum(input_tokens) as input_tokens,
        sum(output_tokens) as output_tokens,
        sum(cache_write_5m_tokens) as cache_write_5m_tokens,
        sum(cache_write_1h_tokens) as cache_write_1h_tokens,
        sum(cache_read_tokens) as cache_read_tokens,
        sum(input_usd) as input_usd,
        sum(cache_write_5m_usd + cache_write_1h_usd + cache_read_usd) as cache_usd,
        sum(output_usd) as output_usd,
        sum(total_usd) as total_usd,
        sum(standard_total_usd) as standard_total_usd,
        sum(case when has_price then 0 else 1 end) as unpriced_result_count

    from landed
    group by enrichment, prompt_version, cost_date

)

select * from final
