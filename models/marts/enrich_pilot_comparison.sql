{#-
    Pilot runs side by side with what is live: one row per pilot (enrichment, model,
    prompt_version of requests with flag_reason 'pilot'), piloted key and field.

    Pilot side: the key's latest pilot request of that version (by intent time, then
    attempt), with its outcome, tokens and cost; its value only when its output is valid.
    Live side: the key's latest valid output among live requests of any other model or
    prompt_version (the value the enriched table showed before the switch); with dedupe,
    results the key shared count, as in the enriched table.

    The fields are the top-level properties of the enrichment's current declaration (or
    output_text without a schema), compared per kind (macros/pilot.sql): strings
    normalised, numbers as numbers, booleans and enums exactly, anything else by its JSON
    text. Enrichments without a valid declaration have no fields, hence no rows.
-#}

{%- set declarations = [] -%}
{%- if execute -%}
    {%- do declarations.extend(batch_enrich.valid_declarations()['valid']) -%}
{%- endif %}

with

outcomes as (

    select * from {{ ref('int_enrich__request_outcomes') }}

),

validated as (

    select * from {{ ref('int_enrich__results_validated') }}

),

costs as (

    select * from {{ ref('enrich_costs') }}

),

request_keys as (

    select * from {{ ref('stg_enrich_ledger__request_keys') }}

),

live_versions as (

    select * from {{ ref('int_enrich__live_versions') }}

),

pilot_requests as (

    select
        *,
        row_number() over (
            partition by enrichment, model, prompt_version, custom_id
            order by intent_at desc nulls last, attempt desc, submission_id desc
        ) as recency_rank

    from outcomes
    where {{ batch_enrich.is_pilot('flag_reason') }}

),

latest_pilots as (

    select
        pilot_requests.enrichment,
        pilot_requests.model as pilot_model,
        pilot_requests.prompt_version as pilot_prompt_version,
        pilot_requests.custom_id as key_custom_id,
        pilot_requests.primary_key,
        pilot_requests.submission_id as pilot_submission_id,
        pilot_requests.batch_id as pilot_batch_id,
        pilot_requests.request_hash as pilot_request_hash,
        pilot_requests.attempt as pilot_attempt,
        pilot_requests.outcome as pilot_outcome,
        pilot_requests.outcome_reason as pilot_failure_reason,
        pilot_requests.intent_at as pilot_intent_at,
        pilot_requests.landed_at as pilot_landed_at,
        costs.input_tokens as pilot_input_tokens,
        costs.output_tokens as pilot_output_tokens,
        costs.total_usd as pilot_total_usd,
        {{ batch_enrich.json_to_text('pilot_requests.primary_key') }} as primary_key_text,
        case
            when pilot_requests.outcome = 'in_flight' then cast(null as boolean)
            else pilot_requests.outcome = 'succeeded_valid'
        end as pilot_is_valid,
        case
            when pilot_requests.outcome = 'succeeded_invalid' then 'invalid'
            when pilot_requests.outcome = 'truncated' then 'truncated'
            when pilot_requests.outcome in ('errored_retryable', 'errored_terminal') then 'errored'
            when pilot_requests.outcome in ('expired', 'canceled', 'missing', 'lost') then 'other'
        end as pilot_failure_type,
        case when pilot_requests.outcome = 'succeeded_valid' then validated.output_json end as pilot_output_json,
        case when pilot_requests.outcome = 'succeeded_valid' then validated.content_text end as pilot_content_text

    from pilot_requests
    left join validated
        on
            pilot_requests.batch_id = validated.batch_id
            and pilot_requests.custom_id = validated.custom_id
    left join costs
        on
            pilot_requests.submission_id = costs.submission_id
            and pilot_requests.custom_id = costs.custom_id
    where pilot_requests.recency_rank = 1

),

live_outputs as (

    select
        request_keys.enrichment,
        request_keys.member_custom_id as key_custom_id,
        validated.request_model as model,
        validated.prompt_version,
        validated.batch_id,
        validated.custom_id,
        validated.attempt,
        validated.landed_at,
        validated.output_json,
        validated.content_text

    from validated
    inner join request_keys
        on
            validated.submission_id = request_keys.submission_id
            and validated.custom_id = request_keys.custom_id
    left join live_versions
        on
            request_keys.enrichment = live_versions.enrichment
            and request_keys.model = live_versions.model
            and request_keys.prompt_version = live_versions.prompt_version
    where
        validated.is_valid
        and {{ batch_enrich.is_live('request_keys.flag_reason', 'live_versions') }}

),

ranked_live_outputs as (

    select
        latest_pilots.enrichment,
        latest_pilots.pilot_model,
        latest_pilots.pilot_prompt_version,
        latest_pilots.key_custom_id,
        live_outputs.model,
        live_outputs.prompt_version,
        live_outputs.batch_id,
        live_outputs.custom_id,
        live_outputs.landed_at,
        live_outputs.output_json,
        live_outputs.content_text,
        row_number() over (
            partition by
                latest_pilots.enrichment,
                latest_pilots.pilot_model,
                latest_pilots.pilot_prompt_version,
                latest_pilots.key_custom_id
            order by live_outputs.landed_at desc, live_outputs.attempt desc, live_outputs.batch_id desc
        ) as recency_rank

    from latest_pilots
    inner join live_outputs
        on
            latest_pilots.enrichment = live_outputs.enrichment
            and latest_pilots.key_custom_id = live_outputs.key_custom_id
    where not (
        live_outputs.model = latest_pilots.pilot_model
        and live_outputs.prompt_version = latest_pilots.pilot_prompt_version
    )

),

pairs as (

    select
        latest_pilots.*,
        ranked_live_outputs.model as live_model,
        ranked_live_outputs.prompt_version as live_prompt_version,
        ranked_live_outputs.batch_id as live_batch_id,
        ranked_live_outputs.custom_id as live_custom_id,
        ranked_live_outputs.landed_at as live_landed_at,
        ranked_live_outputs.output_json as live_output_json,
        ranked_live_outputs.content_text as live_content_text

    from latest_pilots
    left join ranked_live_outputs
        on
            latest_pilots.enrichment = ranked_live_outputs.enrichment
            and latest_pilots.pilot_model = ranked_live_outputs.pilot_model
            and latest_pilots.pilot_prompt_version = ranked_live_outputs.pilot_prompt_version
            and latest_pilots.key_custom_id = ranked_live_outputs.key_custom_id
            and ranked_live_outputs.recency_rank = 1

),

field_values as (

    {{ batch_enrich.pilot_field_values(declarations, 'pairs') | indent(4) }}

),

final as (

    select
        pairs.enrichment,
        pairs.pilot_model,
        pairs.pilot_prompt_version,
        pairs.key_custom_id,
        pairs.primary_key,
        pairs.primary_key_text,
        field_values.field,
        field_values.live_value,
        field_values.pilot_value,
        field_values.is_match,
        pairs.live_model,
        pairs.live_prompt_version,
        pairs.live_batch_id,
        pairs.live_custom_id,
        pairs.live_landed_at,
        pairs.pilot_outcome,
        pairs.pilot_is_valid,
        pairs.pilot_failure_type,
        pairs.pilot_failure_reason,
        pairs.pilot_submission_id,
        pairs.pilot_batch_id,
        pairs.pilot_request_hash,
        pairs.pilot_attempt,
        pairs.pilot_intent_at,
        pairs.pilot_landed_at,
        pairs.pilot_input_tokens,
        pairs.pilot_output_tokens,
        pairs.pilot_total_usd

    from field_values
    inner join pairs
        on
            field_values.enrichment = pairs.enrichment
            and field_values.pilot_model = pairs.pilot_model
            and field_values.pilot_prompt_version = pairs.pilot_prompt_version
            and field_values.key_custom_id = pairs.key_custom_id

)

select * from final
