{#-
    Schema validation, generated at compile time from each declaration's JSON Schema.

    Supported keywords, on the top-level properties of an object schema: `required`,
    `type` (string, integer, number, boolean, array, object, null, or a list of them),
    `enum`, `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `minLength`,
    `maxLength`. Other keywords and nested schemas are not checked here (structured
    outputs and strict tools already enforce them on the API side).

    Every check renders to a SQL expression that is null when the check passes and a
    human-readable reason when it fails; the reasons of one row are joined with '; '.
-#}

{#- SQL literal for a JSON Schema value shown in a message. -#}
{% macro _display_literal(value) -%}
    {{- return(batch_enrich.sql_text_literal(value | string)) -}}
{%- endmacro %}


{#- The checks of one property `name` of the object `output`. -#}
{% macro property_checks(output, name, property, is_required) -%}
    {%- set checks = [] -%}
    {%- set label = batch_enrich.sql_text_literal(name ~ ': ') -%}
    {%- set has_key = batch_enrich.json_has_key(output, name) -%}
    {%- set value_type = batch_enrich.json_schema_type(output, [name]) -%}
    {%- set value_text = batch_enrich.json_get_text(output, [name]) -%}
    {%- set display = "case when " ~ value_type ~ " = 'string' then '''' || " ~ value_text ~ " || '''' else coalesce("
        ~ value_text ~ ", 'null') end" -%}

    {%- if is_required -%}
        {%- do checks.append("case when not " ~ has_key ~ " then "
            ~ batch_enrich.sql_text_literal('missing required key ' ~ name) ~ " end") -%}
    {%- endif -%}

    {%- set types = property.get('type') -%}
    {%- set types = [types] if types is string else (types or []) -%}
    {%- if types | length > 0 -%}
        {%- set allowed = types + (['integer'] if 'number' in types else []) -%}
        {%- do checks.append(
            "case when " ~ has_key ~ " and coalesce(" ~ value_type ~ ", 'absent') not in ('"
            ~ allowed | unique | join("', '") ~ "') then " ~ label ~ " || "
            ~ batch_enrich.sql_text_literal('expected ' ~ types | join(' or ') ~ ', got ')
            ~ " || coalesce(" ~ value_type ~ ", 'nothing') end"
        ) -%}
    {%- endif -%}

    {%- set enum = property.get('enum') -%}
    {%- if enum is not none -%}
        {%- set matches = [] -%}
        {%- for allowed_value in enum -%}
            {%- if allowed_value is none -%}
                {%- do matches.append("coalesce(" ~ value_type ~ ", '') = 'null'") -%}
            {%- elif allowed_value is boolean -%}
                {%- do matches.append("(coalesce(" ~ value_type ~ ", '') = 'boolean' and " ~ value_text ~ " = '"
                    ~ ('true' if allowed_value else 'false') ~ "')") -%}
            {%- elif allowed_value is number -%}
                {%- do matches.append("(coalesce(" ~ value_type ~ ", '') in ('integer', 'number') and cast("
                    ~ value_text ~ " as double precision) = " ~ batch_enrich.sql_number(allowed_value) ~ ")") -%}
            {%- elif allowed_value is string -%}
                {%- do matches.append("(coalesce(" ~ value_type ~ ", '') = 'string' and " ~ value_text ~ " = "
                    ~ batch_enrich.sql_text_literal(allowed_value) ~ ")") -%}
            {%- else -%}
                {%- do matches.append("(" ~ batch_enrich.json_to_text(batch_enrich.json_get(output, [name])) ~ " = "
                    ~ batch_enrich.sql_text_literal(tojson(allowed_value)) ~ ")") -%}
            {%- endif -%}
        {%- endfor -%}
        {%- set matched = matches | join(' or ') if matches else 'false' -%}
        {%- do checks.append("case when " ~ has_key ~ " then case when not (" ~ matched ~ ") then "
            ~ label ~ " || " ~ display ~ " || ' not in enum' end end") -%}
    {%- endif -%}

    {%- set number_value = "cast(" ~ value_text ~ " as double precision)" -%}
    {%- for keyword, operator, words in [
        ('minimum', '<', ' is below minimum '),
        ('maximum', '>', ' is above maximum '),
        ('exclusiveMinimum', '<=', ' is not above exclusive minimum '),
        ('exclusiveMaximum', '>=', ' is not below exclusive maximum '),
    ] -%}
        {%- set limit = property.get(keyword) -%}
        {%- if limit is not none -%}
            {%- do checks.append("case when " ~ has_key ~ " and coalesce(" ~ value_type ~ ", '') in ('integer', 'number')"
                ~ " then case when " ~ number_value ~ " " ~ operator ~ " " ~ batch_enrich.sql_number(limit) ~ " then "
                ~ label ~ " || " ~ value_text ~ " || " ~ batch_enrich.sql_text_literal(words ~ limit) ~ " end end") -%}
        {%- endif -%}
    {%- endfor -%}

    {%- for keyword, operator, words in [
        ('minLength', '<', ' characters, below minLength '),
        ('maxLength', '>', ' characters, above maxLength '),
    ] -%}
        {%- set limit = property.get(keyword) -%}
        {%- if limit is not none -%}
            {%- do checks.append("case when " ~ has_key ~ " and coalesce(" ~ value_type ~ ", '') = 'string'"
                ~ " then case when length(" ~ value_text ~ ") " ~ operator ~ " " ~ batch_enrich.sql_number(limit) ~ " then "
                ~ label ~ " || cast(length(" ~ value_text ~ ") as text) || "
                ~ batch_enrich.sql_text_literal(words ~ limit) ~ " end end") -%}
        {%- endif -%}
    {%- endfor -%}

    {{- return(checks) -}}
{%- endmacro %}


{#- Every check of an object schema, joined: null when the object passes. -#}
{% macro schema_checks(output, schema) -%}
    {%- set checks = ['cast(null as text)'] -%}
    {%- set required = schema.get('required') or [] -%}
    {%- for name, property in (schema.get('properties') or {}).items() -%}
        {%- do checks.extend(batch_enrich.property_checks(output, name, property, name in required)) -%}
    {%- endfor -%}
    nullif(concat_ws('; ', {{ checks | join(',\n') }}), '')
{%- endmacro %}


{#-
    The reason a succeeded, untruncated result of enrichment `decl` is invalid, or null.
    Reads the columns of int_enrich__results_parsed: output_json, content_text, tool_name.
-#}
{% macro declared_invalid_reason(decl) -%}
    {%- set object_type = batch_enrich.json_schema_type('output_json', []) -%}
    {%- if decl['tool'] is not none -%}
        {%- set tool_name = decl['tool']['name'] -%}
        case
            when tool_name is null
                then {{ batch_enrich.sql_text_literal('no tool_use block (expected tool ' ~ tool_name ~ ')') }}
            when tool_name <> {{ batch_enrich.sql_text_literal(tool_name) }}
                then 'tool_use block calls ' || tool_name || {{ batch_enrich.sql_text_literal(', expected ' ~ tool_name) }}
            when coalesce({{ object_type }}, '') <> 'object' then 'tool input is not a JSON object'
            else {{ batch_enrich.schema_checks('output_json', decl['schema']) }}
        end
    {%- elif decl['output_schema'] is not none -%}
        case
            when content_text is null then 'output is empty'
            when output_json is null then 'output is not JSON'
            when coalesce({{ object_type }}, '') <> 'object' then 'output is not a JSON object'
            else {{ batch_enrich.schema_checks('output_json', decl['schema']) }}
        end
    {%- else -%}
        case when content_text is null then 'output is empty' end
    {%- endif -%}
{%- endmacro %}


{#-
    The full reason expression over int_enrich__results_parsed rows: result type and
    stop_reason first, then the declared schema of the row's enrichment. The results of
    an enrichment whose declaration is invalid (`invalid_enrichments`, names) are invalid
    until it is fixed; then its declaration_hash changes and they are validated again.
-#}
{% macro invalid_reason(declarations, invalid_enrichments=[]) -%}
    case
        when result_type = 'errored'
            then 'errored: ' || coalesce(error_type, 'unknown error') || coalesce(': ' || error_message, '')
        when result_type = 'expired' then 'expired: the batch ended before the request was processed'
        when result_type = 'canceled' then 'canceled: the batch was canceled before the request was processed'
        when result_type <> 'succeeded' then 'unknown result type ' || result_type
        when stop_reason = 'max_tokens' then 'truncated at max_tokens'
        when stop_reason = 'refusal' then 'refused: stop_reason refusal'
        when enrichment is null then 'no ledger request matches this result line'
        {%- for decl in declarations %}
        when enrichment = {{ batch_enrich.sql_text_literal(decl['name']) }} then {{ batch_enrich.declared_invalid_reason(decl) }}
        {%- endfor %}
        {%- for name in invalid_enrichments %}
        when enrichment = {{ batch_enrich.sql_text_literal(name) }}
            then {{ batch_enrich.sql_text_literal(
                "the declaration of " ~ name ~ " is invalid; fix config.meta.enrich of model '" ~ name
                ~ "' (building " ~ name ~ "__flagged names the key)"
            ) }}
        {%- endfor %}
        else 'enrichment ' || enrichment || ' is not declared in this project'
    end
{%- endmacro %}


{#- The declarations as rows (enrichment, declaration_hash), for joins in SQL. -#}
{% macro declarations_table(declarations) -%}
    {%- for decl in declarations %}
    select
        {{ batch_enrich.sql_text_literal(decl['name']) }} as enrichment,
        {{ batch_enrich.sql_text_literal(batch_enrich.declaration_hash(decl)) }} as declaration_hash
    {%- if not loop.last %}
    union all
    {%- endif -%}
    {%- else %}
    select
        cast(null as text) as enrichment,
        cast(null as text) as declaration_hash
    where 1 = 0
    {%- endfor %}
{%- endmacro %}


{#- The declaration_hash of the row's enrichment, or null when it is not declared. -#}
{% macro declaration_hash_case(declarations) -%}
    {%- if declarations | length == 0 -%}
        cast(null as text)
    {%- else -%}
    case
        {%- for decl in declarations %}
        when enrichment = {{ batch_enrich.sql_text_literal(decl['name']) }}
            then {{ batch_enrich.sql_text_literal(batch_enrich.declaration_hash(decl)) }}
        {%- endfor %}
    end
    {%- endif -%}
{%- endmacro %}
