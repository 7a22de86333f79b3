{#-
    Schema validation, generated at compile time from each declaration's JSON Schema.

    The whole schema is checked, at every depth (docs/output-models.md): an object's
    `properties` and `required`, an array's `items` (every element), `minItems` and
    `maxItems`; on any value `type` (string, integer, number, boolean, array, object, null,
    or a list of them), `enum`, `minimum`, `maximum`, `exclusiveMinimum`,
    `exclusiveMaximum`, `minLength`, `maxLength`. Each keyword applies only to values of
    its kind, as in JSON Schema (`minimum` to numbers, `items` to arrays...). Other
    keywords (`anyOf`, `$ref`, `pattern`, `additionalProperties`...) are not checked here:
    structured outputs and strict tools enforce them on the API side. Values more than
    `max_validation_depth()` steps below the output are not checked.

    Every check renders to a SQL expression that is null when the check passes and a
    reason when it fails: `<path>: <what>`, the path in JSONPath (`$` the output,
    `$.aspects[2].sentiment`, `$["a b"]`, 0-based indexes). The reason of a row is its
    first failing check, in this order: depth first, an object's properties in schema
    order (for each, a missing required key, then the value's own keywords, then what is
    nested in it), an array's minItems/maxItems, then its elements in index order.

    A location (`at`) is a mapping: `root` (a JSON expression), `path` (keys below it,
    known at compile time), `label` (a SQL text expression: the path down to `root`, or
    none at the output itself), `text` (the rest of the path, as text) and `depth`.
    Arrays are the only dynamic step: their elements are checked by
    `json_first_element_reason` (macros/json.sql), with the element as the new `root`.
-#}

{#- How deep the checks go: values at most this many steps below the output. -#}
{% macro max_validation_depth() -%}
    {{- return(8) -}}
{%- endmacro %}


{#- The step to a property in a reason's path: `.name`, or `["name"]` when it is not an identifier. -#}
{% macro _path_step(name) -%}
    {%- if modules.re.fullmatch('[A-Za-z_][A-Za-z0-9_]*', name) -%}
        {{- return('.' ~ name) -}}
    {%- endif -%}
    {{- return('["' ~ name.replace('\\', '\\\\').replace('"', '\\"') ~ '"]') -}}
{%- endmacro %}


{#- SQL text: the path of `at`, then `tail` (static text). -#}
{% macro _path_text(at, tail) -%}
    {%- set literal = batch_enrich.sql_text_literal(at['text'] ~ tail) -%}
    {{- return(literal if at['label'] is none else at['label'] ~ ' || ' ~ literal) -}}
{%- endmacro %}


{#- The location of the property `name` of the object at `at`. -#}
{% macro _property_location(at, name) -%}
    {{- return({
        'root': at['root'],
        'path': at['path'] + [name],
        'label': at['label'],
        'text': at['text'] ~ batch_enrich._path_step(name),
        'depth': at['depth'] + 1,
    }) -}}
{%- endmacro %}


{#- The JSON value at `at`. -#}
{% macro _value(at) -%}
    {{- return(batch_enrich.json_get(at['root'], at['path']) if at['path'] else at['root']) -}}
{%- endmacro %}


{#- The first reason among `checks` (SQL expressions, null when passing), or null. -#}
{% macro _first_reason(checks) -%}
    {%- if checks | length == 0 -%}
        {{- return('cast(null as text)') -}}
    {%- elif checks | length == 1 -%}
        {{- return(checks[0]) -}}
    {%- endif -%}
    {{- return('coalesce(\n' ~ checks | join(',\n') ~ '\n)') -}}
{%- endmacro %}


{#-
    The checks of the value at `at` against `schema`, in order: its own keywords, then its
    properties (an object) or elements (an array). The value is there: its parent checked
    that, or reports the missing key before these (object_checks).
-#}
{% macro value_checks(at, schema) -%}
    {%- set checks = [] -%}
    {%- set value_type = batch_enrich.json_schema_type(at['root'], at['path']) -%}
    {%- set value_text = batch_enrich.json_get_text(at['root'], at['path']) -%}
    {%- set label = batch_enrich._path_text(at, ': ') -%}
    {%- set is_kind = {} -%}
    {%- for kind in ['object', 'array', 'string', 'boolean', 'null', 'number'] -%}
        {%- do is_kind.update({kind: batch_enrich.json_kind_is(at['root'], at['path'], kind)}) -%}
    {%- endfor -%}
    {%- set display = "case when " ~ is_kind['string'] ~ " then '''' || " ~ value_text ~ " || '''' else coalesce("
        ~ value_text ~ ", 'null') end" -%}

    {%- set types = schema.get('type') -%}
    {%- set types = [types] if types is string else (types or []) -%}
    {%- if types | length > 0 -%}
        {#- the kind of the value, or (only for `integer` without `number`) its JSON Schema type -#}
        {%- set allowed = [] -%}
        {%- for type in types if not (type == 'integer' and 'number' in types) -%}
            {%- do allowed.append(value_type ~ " = 'integer'" if type == 'integer' else is_kind[type]) -%}
        {%- endfor -%}
        {%- do checks.append(
            "case when (" ~ allowed | join(' or ') ~ ") is not true then "
            ~ batch_enrich._path_text(at, ': expected ' ~ types | join(' or ') ~ ', got ')
            ~ " || coalesce(" ~ value_type ~ ", 'nothing') end"
        ) -%}
    {%- endif -%}

    {%- set enum = schema.get('enum') -%}
    {%- if enum is not none -%}
        {#- one test per kind of value listed (a value of another kind never matches) -#}
        {%- set strings = [] -%}
        {%- set numbers = [] -%}
        {%- set booleans = [] -%}
        {%- set others = [] -%}
        {%- set matches = [] -%}
        {%- for allowed_value in enum -%}
            {%- if allowed_value is none -%}
                {%- do matches.append(is_kind['null']) -%}
            {%- elif allowed_value is boolean -%}
                {%- do booleans.append("'true'" if allowed_value else "'false'") -%}
            {%- elif allowed_value is number -%}
                {%- do numbers.append(batch_enrich.sql_number(allowed_value)) -%}
            {%- elif allowed_value is string -%}
                {%- do strings.append(batch_enrich.sql_text_literal(allowed_value)) -%}
            {%- else -%}
                {%- do others.append(batch_enrich.sql_text_literal(tojson(allowed_value))) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if strings -%}
            {%- do matches.append("(" ~ is_kind['string'] ~ " and " ~ value_text ~ " in (" ~ strings | join(', ') ~ "))") -%}
        {%- endif -%}
        {%- if numbers -%}
            {#- a case, not `and`: DuckDB evaluates both sides of `and`, and the cast fails on text -#}
            {%- do matches.append("case when " ~ is_kind['number'] ~ " then cast(" ~ value_text
                ~ " as double precision) in (" ~ numbers | join(', ') ~ ") end") -%}
        {%- endif -%}
        {%- if booleans -%}
            {%- do matches.append("(" ~ is_kind['boolean'] ~ " and " ~ value_text ~ " in (" ~ booleans | join(', ') ~ "))") -%}
        {%- endif -%}
        {%- if others -%}
            {%- do matches.append("(" ~ batch_enrich.json_to_text(batch_enrich._value(at)) ~ " in ("
                ~ others | join(', ') ~ "))") -%}
        {%- endif -%}
        {%- set matched = matches | join(' or ') if matches else 'false' -%}
        {%- do checks.append("case when (" ~ matched ~ ") is not true then "
            ~ label ~ " || " ~ display ~ " || ' not in enum' end") -%}
    {%- endif -%}

    {%- set number_value = "cast(" ~ value_text ~ " as double precision)" -%}
    {%- for keyword, operator, words in [
        ('minimum', '<', ' is below minimum '),
        ('maximum', '>', ' is above maximum '),
        ('exclusiveMinimum', '<=', ' is not above exclusive minimum '),
        ('exclusiveMaximum', '>=', ' is not below exclusive maximum '),
    ] -%}
        {%- set limit = schema.get(keyword) -%}
        {%- if limit is not none -%}
            {%- do checks.append("case when " ~ is_kind['number']
                ~ " then case when " ~ number_value ~ " " ~ operator ~ " " ~ batch_enrich.sql_number(limit) ~ " then "
                ~ label ~ " || " ~ value_text ~ " || " ~ batch_enrich.sql_text_literal(words ~ limit) ~ " end end") -%}
        {%- endif -%}
    {%- endfor -%}

    {%- for keyword, operator, words in [
        ('minLength', '<', ' characters, below minLength '),
        ('maxLength', '>', ' characters, above maxLength '),
    ] -%}
        {%- set limit = schema.get(keyword) -%}
        {%- if limit is not none -%}
            {%- do checks.append("case when " ~ is_kind['string']
                ~ " then case when length(" ~ value_text ~ ") " ~ operator ~ " " ~ batch_enrich.sql_number(limit) ~ " then "
                ~ label ~ " || cast(length(" ~ value_text ~ ") as text) || "
                ~ batch_enrich.sql_text_literal(words ~ limit) ~ " end end") -%}
        {%- endif -%}
    {%- endfor -%}

    {#-
        What is nested, only in a value of its kind. When `type` allows that kind only, the
        type check above already names any other value, and a reason is the first non-null
        check: the nested checks follow it without a gate (on another kind of value they
        raise no SQL error, and what they may say comes after the type check's reason).
    -#}
    {%- for kind, nested in [
        ('object', batch_enrich.object_checks(at, schema)),
        ('array', batch_enrich.array_checks(at, schema)),
    ] if nested -%}
        {%- if types == [kind] -%}
            {%- do checks.extend(nested) -%}
        {%- else -%}
            {%- do checks.append("case when " ~ is_kind[kind] ~ " then " ~ batch_enrich._first_reason(nested) ~ " end") -%}
        {%- endif -%}
    {%- endfor -%}

    {{- return(checks) -}}
{%- endmacro %}


{#-
    The checks of `properties` and `required` on the object at `at`, property by property
    in schema order: a required key that is missing, then the checks of its value (without
    a gate: on an absent value they raise no SQL error, and the missing key comes first);
    an optional property's checks only when the key is there.
-#}
{% macro object_checks(at, schema) -%}
    {%- set checks = [] -%}
    {%- if at['depth'] >= batch_enrich.max_validation_depth() -%}
        {{- return(checks) -}}
    {%- endif -%}
    {%- set required = schema.get('required') or [] -%}
    {%- for name, property in (schema.get('properties') or {}).items() -%}
        {%- set child = batch_enrich._property_location(at, name) -%}
        {%- set has_key = batch_enrich.json_has_path(at['root'], child['path']) -%}
        {%- set child_checks = batch_enrich.value_checks(child, property) -%}
        {%- if name in required -%}
            {%- set missing = batch_enrich._path_text(at, ': missing required key ' ~ name) -%}
            {%- do checks.append("case when not " ~ has_key ~ " then " ~ missing ~ " end") -%}
            {%- do checks.extend(child_checks) -%}
        {%- elif child_checks -%}
            {%- do checks.append("case when " ~ has_key ~ " then " ~ batch_enrich._first_reason(child_checks) ~ " end") -%}
        {%- endif -%}
    {%- endfor -%}
    {{- return(checks) -}}
{%- endmacro %}


{#-
    The checks of `minItems`, `maxItems` and `items` on the array at `at`: its length,
    then the first element (in index order) whose checks fail, as a correlated
    subquery (Postgres) or a list lambda (DuckDB) over the elements.
-#}
{% macro array_checks(at, schema) -%}
    {%- set checks = [] -%}
    {%- set length = batch_enrich.json_array_length(batch_enrich._value(at)) -%}
    {%- for keyword, operator, words in [
        ('minItems', '<', ' items, below minItems '),
        ('maxItems', '>', ' items, above maxItems '),
    ] -%}
        {%- set limit = schema.get(keyword) -%}
        {%- if limit is not none -%}
            {%- do checks.append("case when " ~ length ~ " " ~ operator ~ " " ~ batch_enrich.sql_number(limit) ~ " then "
                ~ batch_enrich._path_text(at, ': ') ~ " || cast(" ~ length ~ " as text) || "
                ~ batch_enrich.sql_text_literal(words ~ limit) ~ " end") -%}
        {%- endif -%}
    {%- endfor -%}

    {%- set items = schema.get('items') -%}
    {%- if items is mapping and at['depth'] < batch_enrich.max_validation_depth() -%}
        {%- set alias = 'element_' ~ (at['depth'] + 1) -%}
        {%- set element = {
            'root': batch_enrich.json_element(alias),
            'path': [],
            'label': batch_enrich._path_text(at, '[') ~ ' || cast(' ~ batch_enrich.json_element_index(alias)
                ~ " as text) || ']'",
            'text': '',
            'depth': at['depth'] + 1,
        } -%}
        {%- set element_checks = batch_enrich.value_checks(element, items) -%}
        {%- if element_checks -%}
            {%- do checks.append(batch_enrich.json_first_element_reason(
                batch_enrich._value(at), alias, batch_enrich._first_reason(element_checks)
            )) -%}
        {%- endif -%}
    {%- endif -%}
    {{- return(checks) -}}
{%- endmacro %}


{#- The reason the object `output` breaks the object schema `schema` (its first failing check), or null. -#}
{% macro schema_checks(output, schema) -%}
    {%- set at = {'root': output, 'path': [], 'label': none, 'text': '$', 'depth': 0} -%}
    {{- batch_enrich._first_reason(batch_enrich.object_checks(at, schema)) -}}
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


{#-
    The declaration_hash a row records: the declaration's fingerprint (declaration_hash)
    and the version of the checks above, so that a package that checks more (v2: nested
    schemas, paths in the reasons) validates the rows it finds again, once.
-#}
{% macro checked_declaration_hash(decl) -%}
    {{- return(local_md5(batch_enrich.declaration_hash(decl) ~ ' checks=v2')) -}}
{%- endmacro %}


{#- The declarations as rows (enrichment, declaration_hash), for joins in SQL. -#}
{% macro declarations_table(declarations) -%}
    {%- for decl in declarations %}
    select
        {{ batch_enrich.sql_text_literal(decl['name']) }} as enrichment,
        {{ batch_enrich.sql_text_literal(batch_enrich.checked_declaration_hash(decl)) }} as declaration_hash
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
            then {{ batch_enrich.sql_text_literal(batch_enrich.checked_declaration_hash(decl)) }}
        {%- endfor %}
    end
    {%- endif -%}
{%- endmacro %}
