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


{#- The key as text, as backlog_key_text makes it, from a ledger primary_key (JSON). -#}
{% macro backlog_json_key_text(decl, json_expression) -%}
    {%- set parts = [] -%}
    {%- for column in decl['primary_key'] -%}
        {%- do parts.append("coalesce(" ~ batch_enrich.json_get_text(json_expression, [column]) ~ ", '')") -%}
    {%- endfor -%}
    {{- return(parts | join(" || ' | ' || ")) -}}
{%- endmacro %}


{#-
    enrichment, key_text, request_hash, flag_reason of every flagged row. `ledger` holds
    the relations the flagged query reads: request_keys, batches, outcomes. With
    `touched` (the name of a relation of enrichment, key_text in scope), only the rows
    of those keys, and the query reads only their ledger requests.
-#}
{% macro backlog_flagged_union(input_relations, ledger, touched=none) -%}
    {%- for decl, relation in input_relations %}
    {%- set name = batch_enrich.sql_text_literal(decl['name']) -%}
    {%- set input_relation = relation -%}
    {%- set request_keys_relation = ledger['request_keys'] -%}
    {%- if touched is not none -%}
        {%- set input_relation -%}
            (
                select touched_input.* from {{ relation }} as touched_input
                where exists (
                    select 1 from {{ touched }}
                    where
                        {{ touched }}.enrichment = {{ name }}
                        and {{ touched }}.key_text = {{ batch_enrich.backlog_key_text(decl, 'touched_input') }}
                )
            ) as scoped_input
        {%- endset -%}
        {%- set request_keys_relation -%}
            (
                select touched_keys.* from {{ ledger['request_keys'] }} as touched_keys
                where
                    touched_keys.enrichment = {{ name }}
                    and exists (
                        select 1 from {{ touched }}
                        where
                            {{ touched }}.enrichment = {{ name }}
                            and {{ touched }}.key_text
                            = {{ batch_enrich.backlog_json_key_text(decl, 'touched_keys.primary_key') }}
                    )
            ) as scoped_request_keys
        {%- endset -%}
    {%- endif %}
    select
        {{ name }} as enrichment,
        {{ batch_enrich.backlog_key_text(decl, 'flagged') }} as key_text,
        cast(flagged.request_hash as text) as request_hash,
        cast(flagged.flag_reason as text) as flag_reason
    from (
        {{ batch_enrich.flagged_sql(decl, input_relation, request_keys_relation, ledger['batches'], ledger['outcomes']) | indent(8) }}
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


{#-
    enrichment, key_text of the keys whose flagged state a request whose outcome changed
    since `since` can have changed: the keys it served.
-#}
{% macro backlog_changed_keys(input_relations, since) -%}
    {%- for decl, relation in input_relations %}
    select
        changed_keys.enrichment,
        {{ batch_enrich.backlog_json_key_text(decl, 'changed_keys.primary_key') }} as key_text
    from ({{ batch_enrich.changed_keys_sql(since) | indent(4) }}) as changed_keys
    where changed_keys.enrichment = {{ batch_enrich.sql_text_literal(decl['name']) }}
    {%- if not loop.last %}
    union
    {%- endif -%}
    {%- else %}
    select
        cast(null as text) as enrichment,
        cast(null as text) as key_text
    where 1 = 0
    {%- endfor %}
{%- endmacro %}


{#- Hours from `start` to `end` (timestamps with time zone), as a double. -#}
{% macro hours_between(start, end) -%}
    cast(extract(epoch from {{ end }}) - extract(epoch from {{ start }}) as double precision) / 3600.0
{%- endmacro %}



{#- enrichment, key_text, request_hash of every input row of `input_relations` ([(decl, relation)]). -#}
{% macro input_keys_union(input_relations) -%}
    {%- for decl, relation in input_relations %}
    select
        {{ batch_enrich.sql_text_literal(decl['name']) }} as enrichment,
        {{ batch_enrich.backlog_key_text(decl, 'input_rows') }} as key_text,
        {{ batch_enrich.request_hash_sql(decl, batch_enrich.column_ref(decl['prompt_column'], 'input_rows')) }}
            as request_hash
    from {{ relation }} as input_rows
    {%- if not loop.last %}
    union all
    {%- endif -%}
    {%- else %}
    select
        cast(null as text) as enrichment,
        cast(null as text) as key_text,
        cast(null as text) as request_hash
    where 1 = 0
    {%- endfor %}
{%- endmacro %}
