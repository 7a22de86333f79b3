{#-
    The backlog models (enrich_backlog_rows, enrich_backlog; docs/output-models.md).

    The flagged views are user models that the package cannot `ref` (it cannot know
    their names when dbt parses it), so each valid declaration's flagged view is read
    through its relation in the graph, and only when it exists in the warehouse. A
    flagged view is a view: it computes from the tables the same build refreshed
    before, so the order in which dbt builds the two does not change what it selects.
    Until a flagged view has been built once, its enrichment counts no flagged rows.
-#}

{#- [(declaration, relation)] of each valid declaration whose flagged view exists. -#}
{% macro backlog_flagged_relations() -%}
    {%- set found = [] -%}
    {%- for decl in batch_enrich.valid_declarations()['valid'] -%}
        {%- for node in graph.nodes.values() if node.resource_type == 'model' and node.name == decl['flagged_model'] -%}
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


{#- enrichment, key_text, request_hash, flag_reason of every flagged row. -#}
{% macro backlog_flagged_union(flagged_relations) -%}
    {%- for decl, relation in flagged_relations %}
    select
        {{ batch_enrich.sql_text_literal(decl['name']) }} as enrichment,
        {{ batch_enrich.backlog_key_text(decl, 'flagged') }} as key_text,
        cast(flagged.request_hash as text) as request_hash,
        cast(flagged.flag_reason as text) as flag_reason
    from {{ relation }} as flagged
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

