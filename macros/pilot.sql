{#-
    Pilot runs (`enrich pilot NAME --sample N`; docs/output-models.md, "Pilot runs").

    A pilot request is an ordinary ledger request with flag_reason 'pilot'. A pilot is
    (enrichment, model, prompt_version) of its requests; it is switched to once any
    non-pilot request of the enrichment uses the same model and prompt_version
    (int_enrich__live_versions). A request is live when it is not a pilot or its
    version is switched to; the "current value" models (enriched tables, enrich_history's
    is_current, enrich_costs_by_row's value) look at live requests only.

    enrich_pilot_comparison compares a pilot's output with the live one, field by
    field; the fields and how each is compared come from the enrichment's current
    declaration, at compile time (pilot_fields).
-#}


{#- Whether the request with this flag_reason is a pilot request (never null). -#}
{% macro is_pilot(flag_reason_expression) -%}
    (coalesce({{ flag_reason_expression }}, '') = 'pilot')
{%- endmacro %}


{#-
    Whether the request is live: not a pilot, or a pilot whose version is switched to.
    `live_versions_alias` is int_enrich__live_versions left-joined on the request's
    enrichment, model and prompt_version.
-#}
{% macro is_live(flag_reason_expression, live_versions_alias) -%}
    (not {{ batch_enrich.is_pilot(flag_reason_expression) }} or {{ live_versions_alias }}.enrichment is not null)
{%- endmacro %}


{#-
    [(field, kind)] of a declaration, one per top-level property of its schema (in
    declared order), or [('output_text', 'text')] without a schema. The kind says how
    the two values are compared:
      text    a string: lower case, trimmed, runs of whitespace as one space
      number  integer or number: as numbers (double precision)
      exact   boolean, or any property with an enum: the value's text as is
      json    anything else (object, array, several types): its JSON text as is
    The property's type is read as in output_columns (macros/enriched.sql): a 'null'
    alternative is ignored; several other types make it json.
-#}
{% macro pilot_fields(decl) -%}
    {%- set fields = [] -%}
    {%- if decl['schema'] is none -%}
        {%- do fields.append(('output_text', 'text')) -%}
    {%- else -%}
        {%- for name, property in (decl['schema'].get('properties') or {}).items() -%}
            {%- set types = property.get('type') if property is mapping else none -%}
            {%- set types = [types] if types is string else (types or []) -%}
            {%- set types = types | reject('equalto', 'null') | list -%}
            {%- set type = types[0] if types | length == 1 else none -%}
            {%- if property is mapping and property.get('enum') is not none -%}
                {%- set kind = 'exact' -%}
            {%- elif type == 'string' -%}
                {%- set kind = 'text' -%}
            {%- elif type in ['integer', 'number'] -%}
                {%- set kind = 'number' -%}
            {%- elif type == 'boolean' -%}
                {%- set kind = 'exact' -%}
            {%- else -%}
                {%- set kind = 'json' -%}
            {%- endif -%}
            {%- do fields.append((name, kind)) -%}
        {%- endfor -%}
    {%- endif -%}
    {{- return(fields) -}}
{%- endmacro %}


{#-
    The field's value as text, from an output: `json_expression` is its output_json,
    or none without a schema (the value is then the message text, `text_expression`).
    Strings without quotes, numbers and booleans as their JSON text, kind json as JSON
    text (strings quoted); null when the output has no value there (absent, JSON null).
-#}
{% macro pilot_value_text(field, kind, json_expression, text_expression) -%}
    {%- if json_expression is none -%}
        {{- return(text_expression) -}}
    {%- endif -%}
    {%- set text = batch_enrich.json_get_text(json_expression, [field]) -%}
    {%- if kind == 'json' -%}
        {{- return('case when ' ~ text ~ ' is not null then '
            ~ batch_enrich.json_to_text(batch_enrich.json_get(json_expression, [field])) ~ ' end') -}}
    {%- endif -%}
    {{- return(text) -}}
{%- endmacro %}


{#-
    What is compared for a field of this kind (null when there is nothing to compare):
    normalised text, a number, or the text as is. A number field whose value is not a
    number (possible only for an output validated under another declaration) gives null.
-#}
{% macro pilot_comparable(kind, value_text_expression, json_expression=none, field=none) -%}
    {%- if kind == 'text' -%}
        {{- return(batch_enrich.pilot_normalized_text(value_text_expression)) -}}
    {%- elif kind == 'number' -%}
        {{- return('case when ' ~ batch_enrich.json_schema_type(json_expression, [field])
            ~ " in ('integer', 'number') then cast(" ~ value_text_expression ~ ' as double precision) end') -}}
    {%- endif -%}
    {{- return(value_text_expression) -}}
{%- endmacro %}


{#- Lower case, trimmed, every run of whitespace one space. -#}
{% macro pilot_normalized_text(text_expression) -%}
    {{- return(adapter.dispatch('pilot_normalized_text', 'batch_enrich')(text_expression)) -}}
{%- endmacro %}

{#- DuckDB: `\s` is RE2's ASCII whitespace (space, tab, line breaks, form feed). -#}
{% macro default__pilot_normalized_text(text_expression) -%}
    {{- return("lower(trim(regexp_replace(" ~ text_expression ~ ", '\\s+', ' ', 'g')))") -}}
{%- endmacro %}

{#-
    Postgres: `[[:space:]]`, ASCII whitespace and any other character the database's
    locale classes as a space; `btrim(..., ' ')` after the runs are collapsed.
-#}
{% macro postgres__pilot_normalized_text(text_expression) -%}
    {{- return("lower(btrim(regexp_replace(" ~ text_expression ~ ", '[[:space:]]+', ' ', 'g'), ' '))") -}}
{%- endmacro %}


{#-
    One row per pilot row and field of each declaration: the union over `declarations`
    (valid, resolved) of the fields of each, read from `pairs_alias`, a relation with
    enrichment, pilot_model, pilot_prompt_version, key_custom_id, pilot_output_json,
    pilot_content_text, live_output_json and live_content_text. Columns: those four
    keys, field, live_value, pilot_value, is_match (null when either side has no value).
-#}
{% macro pilot_field_values(declarations, pairs_alias) -%}
    {%- set branches = [] -%}
    {%- for decl in declarations -%}
        {%- for field, kind in batch_enrich.pilot_fields(decl) -%}
            {%- do branches.append((decl, field, kind)) -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- for decl, field, kind in branches %}
    {%- set sides = {} -%}
    {%- for side in ['live', 'pilot'] -%}
        {%- set json_expression = none if decl['schema'] is none else pairs_alias ~ '.' ~ side ~ '_output_json' -%}
        {%- set value = batch_enrich.pilot_value_text(
            field, kind, json_expression, pairs_alias ~ '.' ~ side ~ '_content_text'
        ) -%}
        {%- do sides.update({
            side: value,
            side ~ '_comparable': batch_enrich.pilot_comparable(kind, value, json_expression, field),
        }) -%}
    {%- endfor %}
    select
        compared.enrichment,
        compared.pilot_model,
        compared.pilot_prompt_version,
        compared.key_custom_id,
        compared.field,
        compared.live_value,
        compared.pilot_value,
        case
            when compared.live_comparable is null or compared.pilot_comparable is null then cast(null as boolean)
            else compared.live_comparable = compared.pilot_comparable
        end as is_match
    from (
        select
            {{ pairs_alias }}.enrichment,
            {{ pairs_alias }}.pilot_model,
            {{ pairs_alias }}.pilot_prompt_version,
            {{ pairs_alias }}.key_custom_id,
            {{ batch_enrich.sql_text_literal(field) }} as field,
            {{ sides['live'] }} as live_value,
            {{ sides['pilot'] }} as pilot_value,
            {{ sides['live_comparable'] }} as live_comparable,
            {{ sides['pilot_comparable'] }} as pilot_comparable
        from {{ pairs_alias }}
        where {{ pairs_alias }}.enrichment = {{ batch_enrich.sql_text_literal(decl['name']) }}
    ) as compared
    {%- if not loop.last %}
    union all
    {%- endif -%}
    {%- else %}
    select
        cast(null as text) as enrichment,
        cast(null as text) as pilot_model,
        cast(null as text) as pilot_prompt_version,
        cast(null as text) as key_custom_id,
        cast(null as text) as field,
        cast(null as text) as live_value,
        cast(null as text) as pilot_value,
        cast(null as boolean) as is_match
    where 1 = 0
    {%- endfor %}
{%- endmacro %}


{#-
    (enrichment, model, prompt_version) of each declaration as rows: the version a sync
    would send now.
-#}
{% macro declared_versions_table(declarations) -%}
    {%- for decl in declarations %}
    select
        {{ batch_enrich.sql_text_literal(decl['name']) }} as enrichment,
        {{ batch_enrich.sql_text_literal(decl['model']) }} as model,
        {{ batch_enrich.sql_text_literal(decl['prompt_version']) }} as prompt_version
    {%- if not loop.last %}
    union all
    {%- endif -%}
    {%- else %}
    select
        cast(null as text) as enrichment,
        cast(null as text) as model,
        cast(null as text) as prompt_version
    where 1 = 0
    {%- endfor %}
{%- endmacro %}


{#- Generic test: fails for every row whose column is outside 0..1 (null passes). -#}
{% test between_zero_and_one(model, column_name) %}

select *
from {{ model }}
where {{ column_name }} < 0 or {{ column_name }} > 1

{% endtest %}
