{#-
    The backlog models (enrich_backlog_rows, enrich_backlog; docs/output-models.md).

    The flagged views are user models that the package cannot `ref` (it cannot know
    their names when dbt parses it). Reading them through their relations in the graph
    is not reliable either: on Postgres, rebuilding a ledger model they read
    (int_enrich__request_outcomes, the staging views) drops them (`drop ... cascade`)
    until the same build creates them again, and dbt may run the backlog in between.
    So the backlog runs each valid declaration's flagged query itself
    (`batch_enrich.flagged_sql`, what `batch_enrich.flagged` selects) over the
    enrichment's input model, found in the graph, with the ledger models this build
    refreshed. Until the input model has been built once, its enrichment counts no
    flagged rows.
-#}

{#- [(declaration, input relation)] of each valid declaration whose input model exists. -#}
{% macro backlog_flagged_relations() -%}
    {%- set found = [] -%}
    {%- for decl in batch_enrich.valid_declarations()['valid'] -%}
        {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.name == decl['name'] -%}
            {%- set relation = adapter.get_relation(
                database=node.database, schema=node.schema, identifier=node.alias
            ) -%}
            {%- if relation is not none -%}
                {%- do found.append((decl, relation)) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {{- return(found) -}}
{%- endmacro %}


{#- The row's key as text: the key column(s) cast to text, joined by ' | '. -#}
{% macro backlog_key_text(decl, relation_alias) -%}
    {%- set parts = [] -%}
    {%- for column in decl['primary_key'] -%}
        {%- do parts.append("coalesce(cast(" ~ batch_enrich.column_ref(column, relation_alias) ~ " as text), '')") -%}
    {%- endfor -%}
    {{- return(parts | join(" || ' | ' || ")) -}}
{%- endmacro %}


{#-
    enrichment, key_text, request_hash, flag_reason of every flagged row. `ledger` holds
    the relations the flagged query reads: request_keys, batches, outcomes.
-#}
{% macro backlog_flagged_union(input_relations, ledger) -%}
    {%- for decl, relation in input_relations %}
    select
        {{ batch_enrich.sql_text_literal(decl['name']) }} as enrichment,
        {{ batch_enrich.backlog_key_text(decl, 'flagged') }} as key_text,
        cast(flagged.request_hash as text) as request_hash,
        cast(flagged.flag_reason as text) as flag_reason
    from (
        {{ batch_enrich.flagged_sql(decl, relation, ledger['request_keys'], ledger['batches'], ledger['outcomes']) | indent(8) }}
    ) as flagged
    {%- if not loop.last %}
    union all
    {%- endif -%}
    {%- else %}
    select
        cast(null as text) as enrichment,
        cast(null as text) as key_text,
        cast(null as text) as request_hash,
        cast(null as text) as flag_reason
    where 1 = 0
    {%- endfor %}
{%- endmacro %}


{#- Hours from `start` to `end` (timestamps with time zone), as a double. -#}
{% macro hours_between(start, end) -%}
    cast(extract(epoch from {{ end }}) - extract(epoch from {{ start }}) as double precision) / 3600.0
{%- endmacro %}

