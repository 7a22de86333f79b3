{#-
    Cost per ledger request: usage x the model's prices (seed batch_enrich_model_prices),
    cache writes and reads at their multipliers of the input price, everything at the
    batch discount. Requests without a succeeded line cost nothing (the API bills only
    processed requests). Prices are looked up by the requested model, then by the model
    the response names. shared_by counts the input keys a request served: 1, or with
    dedupe 1 + the rows that shared its result (enrich_costs_by_row splits the cost).

    Incremental: a build prices again the requests whose outcome changed since its last
    one (int_enrich__request_outcomes.changed_at), every request when the price seed
    changed (macros/incremental.sql).
-#}

{{ batch_enrich.incremental_config('enrich_costs', ['submission_id', 'custom_id'], indexes=[['cost_date']]) }}
{%- set since = batch_enrich.model_since('enrich_costs') %}

with

outcomes as (

    select * from {{ ref('int_enrich__request_outcomes') }}
    {%- if since is not none %}
    where changed_at > {{ since }}
    {%- endif %}

),

parsed as (

    select * from {{ ref('int_enrich__results_parsed') }}

),

prices as (

    select * from {{ ref('batch_enrich_model_prices') }}

),

usage as (

    select
        outcomes.submission_id,
        outcomes.custom_id,
        outcomes.batch_id,
        outcomes.enrichment,
        outcomes.prompt_version,
        outcomes.model,
        outcomes.attempt,
        outcomes.outcome,
        parsed.response_model,
        parsed.landed_at,
        outcomes.shared_by,
        coalesce(parsed.input_tokens, 0) as input_tokens,
        coalesce(parsed.output_tokens, 0) as output_tokens,
        coalesce(
            parsed.cache_creation_5m_input_tokens,
            parsed.cache_creation_input_tokens - coalesce(parsed.cache_creation_1h_input_tokens, 0),
            0
        ) as cache_write_5m_tokens,
        coalesce(parsed.cache_creation_1h_input_tokens, 0) as cache_write_1h_tokens,
        coalesce(parsed.cache_read_input_tokens, 0) as cache_read_tokens

    from outcomes
    left join parsed
        on
            outcomes.batch_id = parsed.batch_id
            and outcomes.custom_id = parsed.custom_id

),

priced as (

    select
        usage.*,
        coalesce(requested_price.model, response_price.model) as price_model,
        coalesce(requested_price.input_usd_per_mtok, response_price.input_usd_per_mtok) as input_usd_per_mtok,
        coalesce(requested_price.output_usd_per_mtok, response_price.output_usd_per_mtok) as output_usd_per_mtok,
        coalesce(requested_price.cache_write_5m_multiplier, response_price.cache_write_5m_multiplier)
            as cache_write_5m_multiplier,
        coalesce(requested_price.cache_write_1h_multiplier, response_price.cache_write_1h_multiplier)
            as cache_write_1h_multiplier,
        coalesce(requested_price.cache_read_multiplier, response_price.cache_read_multiplier)
            as cache_read_multiplier,
        coalesce(requested_price.batch_discount, response_price.batch_discount) as batch_discount

    from usage
    left join prices as requested_price
        on usage.model = requested_price.model
    left join prices as response_price
        on usage.response_model = response_price.model

),

costed as (

    select
        *,
        input_tokens * input_usd_per_mtok / 1000000.0 as standard_input_usd,
        cache_write_5m_tokens * input_usd_per_mtok * cache_write_5m_multiplier / 1000000.0
            as standard_cache_write_5m_usd,
        cache_write_1h_tokens * input_usd_per_mtok * cache_write_1h_multiplier / 1000000.0
            as standard_cache_write_1h_usd,
        cache_read_tokens * input_usd_per_mtok * cache_read_multiplier / 1000000.0 as standard_cache_read_usd,
        output_tokens * output_usd_per_mtok / 1000000.0 as standard_output_usd

    from priced

),

final as (

    select
        submission_id,
        custom_id,
        batch_id,
        enrichment,
        prompt_version,
        model,
        response_model,
        price_model,
        attempt,
        outcome,
        shared_by,
        landed_at,
        input_tokens,
        output_tokens,
        cache_write_5m_tokens,
        cache_write_1h_tokens,
        cache_read_tokens,
        batch_discount,
        cast(landed_at as date) as cost_date,
        price_model is not null as has_price,
        standard_input_usd * (1 - batch_discount) as input_usd,
        standard_cache_write_5m_usd * (1 - batch_discount) as cache_write_5m_usd,
        standard_cache_write_1h_usd * (1 - batch_discount) as cache_write_1h_usd,
        standard_cache_read_usd * (1 - batch_discount) as cache_read_usd,
        standard_output_usd * (1 - batch_discount) as output_usd,
        (
            standard_input_usd + standard_cache_write_5m_usd + standard_cache_write_1h_usd
            + standard_cache_read_usd + standard_output_usd
        ) * (1 - batch_discount) as total_usd,
        standard_input_usd + standard_cache_write_5m_usd + standard_cache_write_1h_usd
        + standard_cache_read_usd + standard_output_usd as standard_total_usd

    from costed

)

select * from final
