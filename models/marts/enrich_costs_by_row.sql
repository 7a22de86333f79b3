{#-
    Cost per enrichment and input key. Every request that served the key counts: its own
    requests and, with dedupe, requests of other rows whose result it shared. A request's
    cost is split evenly among the keys it served (enrich_costs.shared_by), the sender
    included, so the keys of an enrichment add up to its enrich_costs.

    value_usd is the key's share of the request behind its current value: the latest
    valid output (by landed_at, then attempt) of a live request, as in
    enrich_history.is_current and, unless the input went back to an earlier version, the
    enriched table. A pilot request (flag_reason 'pilot') counts in the totals (it was
    paid), but is the value only once its version is switched to (int_enrich__live_versions).

    Incremental: a build sums again the keys served by requests whose outcome changed
    since its last one; every key when the price seed or the live versions changed
    (macros/incremental.sql).
-#}

-- depends_on: {{ ref('int_enrich__request_outcomes') }}
{{ batch_enrich.incremental_config('enrich_costs_by_row', ['enrichment', 'key_custom_id']) }}
{%- set since = batch_enrich.model_since('enrich_costs_by_row') %}

with

costs as (

    select * from {{ ref('enrich_costs') }}

),

{% if since is not none %}
    all_request_keys as (

        select * from {{ ref('stg_enrich_ledger__request_keys') }}

    ),

    touched_keys as (

        {{ batch_enrich.changed_keys_sql(since) | indent(8) }}

    ),

    request_keys as (

        select all_request_keys.*
        from all_request_keys
        inner join touched_keys
            on
                all_request_keys.enrichment = touched_keys.enrichment
                and all_request_keys.member_custom_id = touched_keys.member_custom_id

    ),
{% else %}
    request_keys as (

        select * from {{ ref('stg_enrich_ledger__request_keys') }}

    ),
{% endif %}

live_versions as (

    select * from {{ ref('int_enrich__live_versions') }}

),

key_requests as (

    select
        request_keys.enrichment,
        request_keys.member_custom_id as key_custom_id,
        request_keys.primary_key,
        request_keys.is_shared_result,
        costs.submission_id,
        costs.custom_id,
        costs.batch_id,
        costs.attempt,
        costs.outcome,
        costs.landed_at,
        costs.shared_by,
        costs.has_price,
        costs.total_usd / costs.shared_by as total_usd,
        costs.standard_total_usd / costs.shared_by as standard_total_usd,
        costs.outcome = 'succeeded_valid'
        and {{ batch_enrich.is_live('request_keys.flag_reason', 'live_versions') }} as is_live_value

    from request_keys
    inner join costs
        on
            request_keys.submission_id = costs.submission_id
            and request_keys.custom_id = costs.custom_id
    left join live_versions
        on
            request_keys.enrichment = live_versions.enrichment
            and request_keys.model = live_versions.model
            and request_keys.prompt_version = live_versions.prompt_version

),

ranked as (

    select
        *,
        row_number() over (
            partition by enrichment, key_custom_id
            order by
                case when is_live_value then 0 else 1 end,
                landed_at desc nulls last,
                attempt desc,
                batch_id desc nulls last,
                submission_id desc
        ) as value_rank

    from key_requests

),

key_totals as (

    select
        enrichment,
        key_custom_id,
        count(*) as request_count,
        sum(case when is_shared_result then 1 else 0 end) as shared_request_count,
        sum(case when has_price then 0 else 1 end) as unpriced_request_count,
        sum(total_usd) as total_usd,
        sum(standard_total_usd) as standard_total_usd

    from key_requests
    group by enrichment, key_custom_id

),

key_values as (

    select
        enrichment,
        key_custom_id,
        primary_key,
        submission_id,
        batch_id,
        custom_id,
        is_shared_result,
        shared_by,
        total_usd,
        {#- rank 1 is the request of the current value when the key has a live valid output #}
        is_live_value as has_value

    from ranked
    where value_rank = 1

),

final as (

    select
        key_totals.enrichment,
        key_totals.key_custom_id,
        key_values.primary_key,
        key_totals.request_count,
        key_totals.shared_request_count,
        key_totals.unpriced_request_count,
        key_totals.total_usd,
        key_totals.standard_total_usd,
        key_values.has_value,
        case when key_values.has_value then key_values.total_usd end as value_usd,
        case when key_values.has_value then key_values.submission_id end as value_submission_id,
        case when key_values.has_value then key_values.batch_id end as value_batch_id,
        case when key_values.has_value then key_values.custom_id end as value_custom_id,
        case when key_values.has_value then key_values.is_shared_result end as is_value_shared,
        case when key_values.has_value then key_values.shared_by end as value_shared_by

    from key_totals
    inner join key_values
        on
            key_totals.enrichment = key_values.enrichment
            and key_totals.key_custom_id = key_values.key_custom_id

)

select * from final
