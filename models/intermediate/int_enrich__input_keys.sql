{#-
    One row per input row of every valid declaration (its key as text, as
    enrich_backlog_rows keys it) with the request hash the flagged view computes for it
    now. Incremental: a build compares every input row's hash with the one held, and
    rewrites the keys that are new, changed or gone, stamped changed_at; enrich_backlog_rows
    runs the flagged query again for those keys only. Like the backlog, it reads each
    input model through the graph (macros/backlog.sql): an input model built for the
    first time in the same run counts from the next build.
-#}

{{ batch_enrich.incremental_config('int_enrich__input_keys', ['enrichment', 'key_text']) }}
{%- set since = batch_enrich.model_since('int_enrich__input_keys') %}
{%- set inputs = [] %}
{%- if execute %}
    {%- do inputs.extend(batch_enrich.backlog_flagged_relations()) %}
{%- endif %}

with

current_keys as (

    {{ batch_enrich.input_keys_union(inputs) | indent(4) }}

),

input_keys as (

    select
        enrichment,
        key_text,
        min(request_hash) as request_hash

    from current_keys
    group by enrichment, key_text

),

{% if since is not none %}
    previous as (

        select * from {{ this }}

    ),

    touched as (

        select
            input_keys.enrichment,
            input_keys.key_text
        from input_keys
        left join previous
            on
                input_keys.enrichment = previous.enrichment
                and input_keys.key_text = previous.key_text
        where previous.request_hash is distinct from input_keys.request_hash

        union all

        {#- gone from an input that was found (an input not found now, e.g. while a
            view is rebuilt in the same run, keeps its rows) #}
        select
            previous.enrichment,
            previous.key_text
        from previous
        where
            previous.enrichment in (
                {%- for decl, relation in inputs %}
                {{ batch_enrich.sql_text_literal(decl['name']) }}{% if not loop.last %},{% endif %}
                {%- else %}
                cast(null as text)
                {%- endfor %}
            )
            and not exists (
                select 1
                from input_keys
                where
                    input_keys.enrichment = previous.enrichment
                    and input_keys.key_text = previous.key_text
            )

    ),
{% endif %}

final as (

    select
        enrichment,
        key_text,
        request_hash,
        {{ batch_enrich.build_stamp() }} as changed_at

    from input_keys

)

{% if since is not none %}
    {{ batch_enrich.replaced_partitions('touched', 'final', ['enrichment', 'key_text']) }}
{% else %}
    select * from final
{% endif %}
