{#-
    Every parsed result checked against its enrichment's declared schema. The checks are
    generated at compile time from the valid declarations in the graph (models whose
    config.meta.enrich is set); an invalid declaration is left out (its own flagged and
    enriched models fail, naming the key), so it never stops the other enrichments.
    Invalid rows stay, with is_valid = false and a readable invalid_reason. Incremental
    on landed_at; an enrichment with rows validated under another declaration_hash (its
    declaration changed, or was invalid) has all its rows validated again. validated_at
    stamps the rows this build wrote (the models downstream read the rows validated
    since their own last build: macros/incremental.sql).
-#}

{{ config(indexes=batch_enrich.key_indexes([
    ['batch_id', 'custom_id'], ['submission_id', 'custom_id'], ['validated_at'],
])) }}

{%- set declarations = [] -%}
{%- set invalid_enrichments = [] -%}
{%- if execute -%}
    {%- set split = batch_enrich.valid_declarations() -%}
    {%- do declarations.extend(split['valid']) -%}
    {%- do invalid_enrichments.extend(split['invalid']) -%}
{%- endif %}

with

{% if is_incremental() %}
    declarations as (

        {{ batch_enrich.declarations_table(declarations) | indent(4) }}

    ),

    {# Enrichments with rows validated under another declaration (it changed, or was
       invalid then: declaration_hash null); only an incremental build needs them, a
       full build validates every row. #}
    changed_enrichments as (

        select declarations.enrichment
        from declarations
        where exists (
            select 1
            from {{ this }} as validated_before
            where
                validated_before.enrichment = declarations.enrichment
                and validated_before.declaration_hash is distinct from declarations.declaration_hash
        )

    ),
{% endif %}

parsed as (

    select results_parsed.* from {{ ref('int_enrich__results_parsed') }} as results_parsed
    {% if is_incremental() %}
        {# Parsed rows are immutable: within the lookback window, only the ones not
           validated yet; plus every row of an enrichment whose declaration changed. The
           two branches are disjoint, and each is a plain (hashable) anti/semi-join. #}
        where
            results_parsed.landed_at >= {{ batch_enrich.incremental_cutoff(this) }}
            and not exists (
                select 1
                from {{ this }} as validated_before
                where
                    validated_before.batch_id = results_parsed.batch_id
                    and validated_before.custom_id = results_parsed.custom_id
            )
            and not exists (
                select 1
                from changed_enrichments
                where changed_enrichments.enrichment = results_parsed.enrichment
            )

        union all

        select results_parsed.* from {{ ref('int_enrich__results_parsed') }} as results_parsed
        where exists (
            select 1
            from changed_enrichments
            where changed_enrichments.enrichment = results_parsed.enrichment
        )
    {% endif %}

),

checked as (

    select
        parsed.*,
        {{ batch_enrich.declaration_hash_case(declarations) | indent(8) }} as declaration_hash,
        {{ batch_enrich.invalid_reason(declarations, invalid_enrichments) | indent(8) }} as invalid_reason

    from parsed

),

final as (

    select
        batch_id,
        custom_id,
        submission_id,
        enrichment,
        primary_key,
        request_hash,
        input_hash,
        attempt,
        flag_reason,
        request_model,
        prompt_version,
        request_max_tokens,
        result_type,
        stop_reason,
        response_model,
        output_source,
        output_json,
        content_text,
        error_type,
        error_message,
        declaration_hash,
        invalid_reason,
        landed_at,
        invalid_reason is null as is_valid,
        {{ batch_enrich.build_stamp() }} as validated_at

    from checked

)

select * from final
