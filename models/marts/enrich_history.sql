{#-
    Every valid output ever landed, per enrichment and request; is_current marks the
    latest valid output of the request's own key, among every live output that served
    that key (with dedupe, a result shared from another row's request counts too). A key
    is identified by its own custom_id, which is deterministic per key. A pilot output
    (is_pilot) is a row like any other, but competes for is_current only once its
    version is switched to (int_enrich__live_versions), as in the enriched tables.

    Incremental: a build replaces the rows of the keys served by requests whose outcome
    changed since its last one (a key's rows are its own requests' outputs); every row
    when the live versions changed (macros/incremental.sql).
-#}

-- depends_on: {{ ref('int_enrich__request_outcomes') }}
{{ batch_enrich.incremental_config(
    'enrich_history', ['enrichment', 'custom_id'], indexes=[['batch_id', 'custom_id']],
) }}
{%- set since = batch_enrich.model_since('enrich_history') %}

with

all_validated as (

    select * from {{ ref('int_enrich__results_validated') }}

),

all_request_keys as (

    select * from {{ ref('stg_enrich_ledger__request_keys') }}

),

{% if since is not none %}
    touched_keys as (

        select
            changed_keys.enrichment,
            changed_keys.member_custom_id as custom_id
        from ({{ batch_enrich.changed_keys_sql(since) | indent(8) }}) as changed_keys

    ),

    {#- every request that served a touched key (its own, and shared ones) #}
    request_keys as (

        select all_request_keys.*
        from all_request_keys
        inner join touched_keys
            on
                all_request_keys.enrichment = touched_keys.enrichment
                and all_request_keys.member_custom_id = touched_keys.custom_id

    ),

    validated as (

        select all_validated.*
        from all_validated
        where exists (
            select 1
            from request_keys
            where
                request_keys.submission_id = all_validated.submission_id
                and request_keys.custom_id = all_validated.custom_id
        )

    ),
{% else %}
    validated as (

        select * from all_validated

    ),

    request_keys as (

        select * from all_request_keys

    ),
{% endif %}

live_versions as (

    select * from {{ ref('int_enrich__live_versions') }}

),

valid_outputs as (

    select
        validated.*,
        {{ batch_enrich.json_to_text('validated.primary_key') }} as primary_key_text,
        {{ batch_enrich.is_pilot('validated.flag_reason') }} as is_pilot,
        {{ batch_enrich.is_live('validated.flag_reason', 'live_versions') }} as is_live

    from validated
    left join live_versions
        on
            validated.enrichment = live_versions.enrichment
            and validated.request_model = live_versions.model
            and validated.prompt_version = live_versions.prompt_version
    where validated.is_valid

),

key_outputs as (

    select
        valid_outputs.batch_id,
        valid_outputs.custom_id,
        request_keys.is_shared_result,
        row_number() over (
            partition by request_keys.enrichment, request_keys.member_custom_id
            order by valid_outputs.landed_at desc, valid_outputs.attempt desc, valid_outputs.batch_id desc
        ) as recency_rank

    from valid_outputs
    inner join request_keys
        on
            valid_outputs.submission_id = request_keys.submission_id
            and valid_outputs.custom_id = request_keys.custom_id
    where valid_outputs.is_live

),

current_outputs as (

    select
        batch_id,
        custom_id

    from key_outputs
    where
        recency_rank = 1
        and not is_shared_result

),

final as (

    select
        valid_outputs.batch_id,
        valid_outputs.custom_id,
        valid_outputs.enrichment,
        valid_outputs.primary_key,
        valid_outputs.primary_key_text,
        valid_outputs.request_hash,
        valid_outputs.prompt_version,
        valid_outputs.request_model as model,
        valid_outputs.response_model,
        valid_outputs.attempt,
        valid_outputs.flag_reason,
        valid_outputs.output_json,
        valid_outputs.content_text,
        valid_outputs.landed_at,
        valid_outputs.is_pilot,
        current_outputs.custom_id is not null as is_current

    from valid_outputs
    left join current_outputs
        on
            valid_outputs.batch_id = current_outputs.batch_id
            and valid_outputs.custom_id = current_outputs.custom_id
    {%- if since is not none %}
    {#- the rows of the touched keys: their own requests' outputs #}
    where exists (
        select 1
        from touched_keys
        where
            touched_keys.enrichment = valid_outputs.enrichment
            and touched_keys.custom_id = valid_outputs.custom_id
    )
    {%- endif %}

)

{% if since is not none %}
    {{ batch_enrich.replaced_partitions('touched_keys', 'final', ['enrichment', 'custom_id']) }}
{% else %}
    select * from final
{% endif %}
