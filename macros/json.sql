{#-
    JSON extraction, dispatched per adapter. Models call only these macros, never an
    adapter's JSON operators, so one model runs on Postgres and on DuckDB.

    A `path` is a list of object keys (strings) and array positions (0-based integers),
    e.g. ['result', 'message', 'usage', 'input_tokens'].

    Postgres works on jsonb: `as_json` casts the ledger's `json` line to jsonb once, and
    the extraction operators (`#>`, `#>>`) run on the binary form. DuckDB has one `json`
    type and JSONPath functions.
-#}


{#- The adapter's JSON column type. -#}
{% macro json_type() -%}
    {{- return(adapter.dispatch('json_type', 'batch_enrich')()) -}}
{%- endmacro %}

{% macro default__json_type() -%}
    {{- return('json') -}}
{%- endmacro %}

{% macro postgres__json_type() -%}
    {{- return('jsonb') -}}
{%- endmacro %}


{#- Cast a json/text expression holding valid JSON to the adapter's JSON type. -#}
{% macro as_json(expression) -%}
    {{- return(adapter.dispatch('as_json', 'batch_enrich')(expression)) -}}
{%- endmacro %}

{% macro default__as_json(expression) -%}
    cast({{ expression }} as json)
{%- endmacro %}

{% macro postgres__as_json(expression) -%}
    cast({{ expression }} as jsonb)
{%- endmacro %}


{#- Text that may not be JSON: its JSON value, or null. Never raises. -#}
{% macro try_parse_json(text_expression) -%}
    {{- return(adapter.dispatch('try_parse_json', 'batch_enrich')(text_expression)) -}}
{%- endmacro %}

{% macro default__try_parse_json(text_expression) -%}
    case when json_valid({{ text_expression }}) then cast({{ text_expression }} as json) end
{%- endmacro %}

{% macro postgres__try_parse_json(text_expression) -%}
    {{ batch_enrich.ledger_relation('try_parse_jsonb') }}({{ text_expression }})
{%- endmacro %}


{#- Path helpers. -#}
{% macro _postgres_path_literal(path) -%}
    {%- set parts = [] -%}
    {%- for part in path -%}
        {%- set text = part | string -%}
        {%- do parts.append('"' ~ text.replace('\\', '\\\\').replace('"', '\\"') ~ '"') -%}
    {%- endfor -%}
    {{- return("'{" ~ parts | join(',') | replace("'", "''") ~ "}'") -}}
{%- endmacro %}

{% macro _jsonpath_literal(path) -%}
    {%- set parts = ['$'] -%}
    {%- for part in path -%}
        {%- if part is number -%}
            {%- do parts.append('[' ~ part ~ ']') -%}
        {%- else -%}
            {%- do parts.append('."' ~ part.replace('\\', '\\\\').replace('"', '\\"') ~ '"') -%}
        {%- endif -%}
    {%- endfor -%}
    {{- return("'" ~ parts | join('') | replace("'", "''") ~ "'") -}}
{%- endmacro %}


{#- The JSON value at `path` (JSON typed), or null when absent. -#}
{% macro json_get(json_expression, path) -%}
    {{- return(adapter.dispatch('json_get', 'batch_enrich')(json_expression, path)) -}}
{%- endmacro %}

{% macro default__json_get(json_expression, path) -%}
    json_extract({{ json_expression }}, {{ batch_enrich._jsonpath_literal(path) }})
{%- endmacro %}

{% macro postgres__json_get(json_expression, path) -%}
    ({{ json_expression }} #> {{ batch_enrich._postgres_path_literal(path) }})
{%- endmacro %}


{#- The value at `path` as text: strings unquoted, other values as JSON text. -#}
{% macro json_get_text(json_expression, path) -%}
    {{- return(adapter.dispatch('json_get_text', 'batch_enrich')(json_expression, path)) -}}
{%- endmacro %}

{% macro default__json_get_text(json_expression, path) -%}
    json_extract_string({{ json_expression }}, {{ batch_enrich._jsonpath_literal(path) }})
{%- endmacro %}

{% macro postgres__json_get_text(json_expression, path) -%}
    ({{ json_expression }} #>> {{ batch_enrich._postgres_path_literal(path) }})
{%- endmacro %}


{#- A JSON value as compact JSON text (strings keep their quotes). -#}
{% macro json_to_text(json_expression) -%}
    {{- return(adapter.dispatch('json_to_text', 'batch_enrich')(json_expression)) -}}
{%- endmacro %}

{% macro default__json_to_text(json_expression) -%}
    cast({{ json_expression }} as text)
{%- endmacro %}


{#-
    The JSON type of the value at `path`, normalised across adapters to JSON Schema
    words: object, array, string, boolean, null, integer, number (a number with no
    fractional part counts as an integer, as in JSON Schema), or null when absent.
-#}
{% macro json_schema_type(json_expression, path) -%}
    {{- return(adapter.dispatch('json_schema_type', 'batch_enrich')(json_expression, path)) -}}
{%- endmacro %}

{% macro default__json_schema_type(json_expression, path) -%}
    {%- set value = batch_enrich.json_get(json_expression, path) -%}
    case json_type({{ value }})
        when 'OBJECT' then 'object'
        when 'ARRAY' then 'array'
        when 'VARCHAR' then 'string'
        when 'BOOLEAN' then 'boolean'
        when 'NULL' then 'null'
        when 'BIGINT' then 'integer'
        when 'UBIGINT' then 'integer'
        when 'HUGEINT' then 'integer'
        when 'DOUBLE' then
            case
                when cast({{ batch_enrich.json_get_text(json_expression, path) }} as double)
                    = floor(cast({{ batch_enrich.json_get_text(json_expression, path) }} as double))
                    then 'integer'
                else 'number'
            end
    end
{%- endmacro %}

{% macro postgres__json_schema_type(json_expression, path) -%}
    {%- set value = batch_enrich.json_get(json_expression, path) -%}
    case jsonb_typeof({{ value }})
        when 'number' then
            case
                when cast({{ value }} as numeric) = trunc(cast({{ value }} as numeric))
                    then 'integer'
                else 'number'
            end
        else jsonb_typeof({{ value }})
    end
{%- endmacro %}


{#-
    Whether the value at `path` is of the JSON kind `kind`: object, array, string,
    boolean, null or number (any number, integer or not); false or null when absent.
    One comparison on the adapter's own type name: cheaper, and shallower SQL, than
    json_schema_type, which a check needs only to tell integers from other numbers.
-#}
{% macro json_kind_is(json_expression, path, kind) -%}
    {{- return(adapter.dispatch('json_kind_is', 'batch_enrich')(json_expression, path, kind)) -}}
{%- endmacro %}

{% macro default__json_kind_is(json_expression, path, kind) -%}
    {%- set names = {
        'object': "= 'OBJECT'",
        'array': "= 'ARRAY'",
        'string': "= 'VARCHAR'",
        'boolean': "= 'BOOLEAN'",
        'null': "= 'NULL'",
        'number': "in ('BIGINT', 'UBIGINT', 'HUGEINT', 'DOUBLE')",
    } -%}
    (json_type({{ json_expression }}, {{ batch_enrich._jsonpath_literal(path) }}) {{ names[kind] }})
{%- endmacro %}

{% macro postgres__json_kind_is(json_expression, path, kind) -%}
    {%- if kind not in ['object', 'array', 'string', 'boolean', 'null', 'number'] -%}
        {%- do exceptions.raise_compiler_error("batch_enrich: json_kind_is: not a JSON kind: " ~ kind) -%}
    {%- endif -%}
    (jsonb_typeof({{ batch_enrich.json_get(json_expression, path) }}) = '{{ kind }}')
{%- endmacro %}


{#- Whether the object at `json_expression` has the top-level key (even if its value is null). -#}
{% macro json_has_key(json_expression, key) -%}
    {{- return(adapter.dispatch('json_has_key', 'batch_enrich')(json_expression, key)) -}}
{%- endmacro %}

{% macro default__json_has_key(json_expression, key) -%}
    (json_type({{ json_expression }}, {{ batch_enrich._jsonpath_literal([key]) }}) is not null)
{%- endmacro %}

{% macro postgres__json_has_key(json_expression, key) -%}
    ({{ json_expression }} ? {{ dbt.string_literal(key | replace("'", "''")) }})
{%- endmacro %}


{#-
    Whether the key at the end of `path` is there (even if its value is null). The value
    at the path without its last key must be an object (callers check it first).
-#}
{% macro json_has_path(json_expression, path) -%}
    {{- return(adapter.dispatch('json_has_path', 'batch_enrich')(json_expression, path)) -}}
{%- endmacro %}

{% macro default__json_has_path(json_expression, path) -%}
    (json_type({{ json_expression }}, {{ batch_enrich._jsonpath_literal(path) }}) is not null)
{%- endmacro %}

{% macro postgres__json_has_path(json_expression, path) -%}
    {%- set parent = json_expression if path | length == 1 else batch_enrich.json_get(json_expression, path[:-1]) -%}
    {{- batch_enrich.json_has_key(parent, path[-1]) -}}
{%- endmacro %}


{#- The number of elements of a JSON array; 0 (DuckDB) or null (Postgres) for any other value. -#}
{% macro json_array_length(json_expression) -%}
    {{- return(adapter.dispatch('json_array_length', 'batch_enrich')(json_expression)) -}}
{%- endmacro %}

{% macro default__json_array_length(json_expression) -%}
    json_array_length({{ json_expression }})
{%- endmacro %}

{% macro postgres__json_array_length(json_expression) -%}
    jsonb_array_length(case when jsonb_typeof({{ json_expression }}) = 'array' then {{ json_expression }} end)
{%- endmacro %}


{#-
    A check over every element of a JSON array. `json_first_element_reason(array, alias,
    reason)`: the first non-null value of the text expression `reason` over the elements
    of `array`, in index order; null when there is none or `array` is not an array.
    `reason` reads the element as `json_element(alias)` (JSON) and its 0-based index as
    `json_element_index(alias)`; it may hold another such check (an array in the
    element), with another alias, that reads the outer element's index. `alias` is a
    plain identifier, unique along the nesting.

    Postgres: a correlated subquery over jsonb_array_elements ... with ordinality.
    DuckDB: a list lambda over the elements (json_extract(array, '$[*]')) zipped with
    their indexes, each element's reason, then the first non-null one
    (list_any_value). (One argument:
    sqlfluff, which lints the compiled models, cannot parse `lambda x, i: ...`.)
-#}
{% macro json_element(alias) -%}
    {{- return(adapter.dispatch('json_element', 'batch_enrich')(alias)) -}}
{%- endmacro %}

{% macro default__json_element(alias) -%}
    {{- return('struct_extract(' ~ alias ~ ', 1)') -}}
{%- endmacro %}

{% macro postgres__json_element(alias) -%}
    {{- return(alias ~ '.value') -}}
{%- endmacro %}


{% macro json_element_index(alias) -%}
    {{- return(adapter.dispatch('json_element_index', 'batch_enrich')(alias)) -}}
{%- endmacro %}

{% macro default__json_element_index(alias) -%}
    {{- return('struct_extract(' ~ alias ~ ', 2)') -}}
{%- endmacro %}

{% macro postgres__json_element_index(alias) -%}
    {{- return('(' ~ alias ~ '.ordinality - 1)') -}}
{%- endmacro %}


{% macro json_first_element_reason(array_expression, alias, reason) -%}
    {{- return(adapter.dispatch('json_first_element_reason', 'batch_enrich')(array_expression, alias, reason)) -}}
{%- endmacro %}

{% macro default__json_first_element_reason(array_expression, alias, reason) -%}
    list_any_value(list_transform(
        list_zip(
            json_extract({{ array_expression }}, '$[*]'),
            range(cast({{ batch_enrich.json_array_length(array_expression) }} as bigint))
        ),
        lambda {{ alias }}: {{ reason }}
    ))
{%- endmacro %}

{% macro postgres__json_first_element_reason(array_expression, alias, reason) -%}
    (
        select {{ alias }}_checked.reason
        from jsonb_array_elements(
            case when jsonb_typeof({{ array_expression }}) = 'array' then {{ array_expression }} end
        ) with ordinality as {{ alias }}
        cross join lateral (select {{ reason }} as reason) as {{ alias }}_checked
        where {{ alias }}_checked.reason is not null
        order by {{ alias }}.ordinality
        limit 1
    )
{%- endmacro %}


{#-
    Content blocks of a Message (`content_expression` is the JSON array `content`).
    `json_concat_text_blocks`: every `text` block's text, in order, concatenated; null
    when there is none. `json_first_block`: the first block of the given type, or null.
-#}
{% macro json_concat_text_blocks(content_expression) -%}
    {{- return(adapter.dispatch('json_concat_text_blocks', 'batch_enrich')(content_expression)) -}}
{%- endmacro %}

{% macro default__json_concat_text_blocks(content_expression) -%}
    nullif(array_to_string(list_transform(
        list_filter(
            json_extract({{ content_expression }}, '$[*]'),
            lambda block: json_extract_string(block, '$.type') = 'text'
        ),
        lambda block: json_extract_string(block, '$.text')
    ), ''), '')
{%- endmacro %}

{% macro postgres__json_concat_text_blocks(content_expression) -%}
    (
        select nullif(string_agg(block.value ->> 'text', '' order by block.ordinality), '')
        from jsonb_array_elements(
            case when jsonb_typeof({{ content_expression }}) = 'array' then {{ content_expression }} end
        ) with ordinality as block
        where block.value ->> 'type' = 'text'
    )
{%- endmacro %}


{% macro json_first_block(content_expression, block_type) -%}
    {{- return(adapter.dispatch('json_first_block', 'batch_enrich')(content_expression, block_type)) -}}
{%- endmacro %}

{% macro default__json_first_block(content_expression, block_type) -%}
    list_filter(
        json_extract({{ content_expression }}, '$[*]'),
        lambda block: json_extract_string(block, '$.type') = {{ dbt.string_literal(block_type) }}
    )[1]
{%- endmacro %}

{% macro postgres__json_first_block(content_expression, block_type) -%}
    (
        select block.value
        from jsonb_array_elements(
            case when jsonb_typeof({{ content_expression }}) = 'array' then {{ content_expression }} end
        ) with ordinality as block
        where block.value ->> 'type' = {{ dbt.string_literal(block_type) }}
        order by block.ordinality
        limit 1
    )
{%- endmacro %}


{#-
    A join clause that parses `expression` into the adapter's JSON type once per row and
    exposes it as `<alias>.evaluated`. On Postgres the `offset 0` keeps the planner from
    inlining the cast into every extraction (each `#>>` would parse the line again, about
    3x slower for a staging view), while filters on the outer table are still pushed
    down to its scan.
-#}
{% macro join_json_once(expression, alias) -%}
    {{- return(adapter.dispatch('join_json_once', 'batch_enrich')(expression, alias)) -}}
{%- endmacro %}

{% macro default__join_json_once(expression, alias) -%}
    cross join lateral (select {{ batch_enrich.as_json(expression) }} as evaluated) as {{ alias }}
{%- endmacro %}

{% macro postgres__join_json_once(expression, alias) -%}
    cross join lateral (select {{ batch_enrich.as_json(expression) }} as evaluated limit all offset 0) as {{ alias }}
{%- endmacro %}


{#- Like `join_json_once`, for any expression: evaluated once per row as `<alias>.evaluated`. -#}
{% macro join_evaluated_once(expression, alias) -%}
    {{- return(adapter.dispatch('join_evaluated_once', 'batch_enrich')(expression, alias)) -}}
{%- endmacro %}

{% macro default__join_evaluated_once(expression, alias) -%}
    cross join lateral (select {{ expression }} as evaluated) as {{ alias }}
{%- endmacro %}

{% macro postgres__join_evaluated_once(expression, alias) -%}
    cross join lateral (select {{ expression }} as evaluated limit all offset 0) as {{ alias }}
{%- endmacro %}
