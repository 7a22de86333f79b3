{#- Spend per enrichment, prompt_version and day (the day results landed, in the session time zone). -#}

with

costs as (

    select * from {{ ref('enrich_costs') }}

),

landed as (

    select * from costs
    where cost_date is not null

),

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
