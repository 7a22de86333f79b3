{#-
    One row per input row that an enrichment's flagged view selects now (its backlog),
    with the reason and since when it has been waiting: first_flagged_at is the first
    build that found the key flagged with the same request hash and reason (this
    table's previous version is read to carry it over), else this build.

    Every valid declaration's flagged query is run here over its input model
    (macros/backlog.sql: the flagged views themselves may be dropped mid-build on
    Postgres); an enrichment whose input model has not been built yet has no rows. A
    key the query repeats is counted once. The ledger models it reads are refs, below:
    this model is built after them.

    Incremental: a build runs the flagged query again for the keys whose request hash
    changed, appeared or left (int_enrich__input_keys), and the keys served by a request
    whose outcome changed since its last one; every key when a declaration changed
    (macros/incremental.sql).
-#}

-- depends_on: {{ ref('int_enrich__request_outcomes') }}
-- depends_on: {{ ref('stg_enrich_ledger__request_keys') }}
-- depends_on: {{ ref('stg_enrich_ledger__batches') }}
-- depends_on: {{ ref('int_enrich__input_keys') }}
{{ batch_enrich.incremental_config('enrich_backlog_rows', ['enrichment', 'key_text']) }}
{%- set since = batch_enrich.model_since('enrich_backlog_rows') %}

{%- set flagged_relations = [] -%}
{%- set previous = none -%}
{%- if execute -%}
    {%- do flagged_relations.extend(batch_enrich.backlog_flagged_relations()) -%}
    {%- set previous = adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier) -%}
{%- endif %}

with

{% if since is not none %}
    input_keys as (

        select * from {{ ref('int_enrich__input_keys') }}

    ),

    touched as (

        select
            enrichment,
            key_text
        from input_keys
        where changed_at > {{ since }}

        union

        {{ batch_enrich.backlog_changed_keys(flagged_relations, since) | indent(8) }}

        union

        {#- keys that left the input #}
        select
            previous_rows.enrichment,
            previous_rows.key_text
        from {{ this }} as previous_rows
        where not exists (
            select 1
            from input_keys
            where
                input_keys.enrichment = previous_rows.enrichment
                and input_keys.key_text = previous_rows.key_text
        )

    ),
{% endif %}

flagged as (

    {{ batch_enrich.backlog_flagged_union(flagged_relations, {
        'request_keys': ref('stg_enrich_ledger__request_keys'),
        'batches': ref('stg_enrich_ledger__batches'),
        'outcomes': ref('int_enrich__request_outcomes'),
    }, 'touched' if since is not none else none) | indent(4) }}

),

previous as (

    {% if previous is not none -%}
        select
            enrichment,
            key_text,
            request_hash,
            flag_reason,
            first_flagged_at
        from {{ previous }}
    {%- else -%}
        select
            cast(null as text) as enrichment,
            cast(null as text) as key_text,
            cast(null as text) as request_hash,
            cast(null as text) as flag_reason,
            cast(null as timestamp with time zone) as first_flagged_at
        where 1 = 0
    {%- endif %}

),

current_keys as (

    select
        enrichment,
        key_text,
        min(request_hash) as request_hash,
        min(flag_reason) as flag_reason

    from flagged
    group by enrichment, key_text

),

final as (

    select
        current_keys.enrichment,
        current_keys.key_text,
        current_keys.request_hash,
        current_keys.flag_reason,
        coalesce(previous.first_flagged_at, cast(current_timestamp as timestamp with time zone))
            as first_flagged_at

    from current_keys
    left join previous
        on
            current_keys.enrichment = previous.enrichment
            and current_keys.key_text = previous.key_text
            and current_keys.request_hash = previous.request_hash
            and current_keys.flag_reason = previous.flag_reason

)

{% if since is not none %}
    {{ batch_enrich.replaced_partitions('touched', 'final', ['enrichment', 'key_text']) }}
{% else %}
    select * from final
{% endif %}
