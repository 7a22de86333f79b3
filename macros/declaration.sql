{#-
    Declarations: `config.meta.enrich` on an input model (docs/architecture.md §1).

    Everything here runs at compile time. `graph.nodes` is only complete when `execute`
    is true, so callers guard with `{% if execute %}` and, at parse time, still call
    `ref()` for every dependency so dbt records the edges.
-#}

{% macro declaration_defaults() -%}
    {{- return({
        'prompt_column': 'prompt',
        'system': none,
        'output_schema': none,
        'tool': none,
        'prompt_version': 'v1',
        'max_attempts': 3,
        'repair': {'on_max_tokens': false, 'on_invalid': false, 'max_tokens_multiplier': 2},
        'max_requests_per_batch': 100000,
        'max_batch_bytes': 256000000,
        'budget_usd': none,
        'budget_usd_per_day': none,
        'dedupe': false,
        'cache': true,
        'cache_ttl': '1h',
        'cached_prefix': none,
        'pilot_stratify_by': none,
    }) -}}
{%- endmacro %}


{#- The raw `enrich` mapping of a node, or none. -#}
{% macro node_enrich_meta(node) -%}
    {%- set config_meta = (node.config or {}).get('meta') or {} -%}
    {%- set meta = config_meta.get('enrich') -%}
    {%- if meta is none -%}
        {%- set meta = (node.get('meta') or {}).get('enrich') -%}
    {%- endif -%}
    {{- return(meta) -}}
{%- endmacro %}


{#-
    Every declared model node (enabled models whose config.meta.enrich is set), sorted by
    name. dbt compiles unit tests against a manifest without the project's nodes, so a unit
    test supplies its declarations through the var `batch_enrich_declarations`
    ({enrichment: declaration}); when that var is set it replaces the graph.
-#}
{% macro declared_nodes() -%}
    {%- set found = [] -%}
    {%- set overridden = var('batch_enrich_declarations', none) -%}
    {%- if overridden is not none -%}
        {%- for name in overridden | sort -%}
            {%- do found.append({
                'name': name,
                'unique_id': 'var.batch_enrich_declarations.' ~ name,
                'resource_type': 'model',
                'original_file_path': "var 'batch_enrich_declarations'",
                'config': {'meta': {'enrich': overridden[name]}},
            }) -%}
        {%- endfor -%}
    {%- elif execute -%}
        {%- for node in graph.nodes.values() | sort(attribute='name') -%}
            {%- if node.resource_type == 'model' and batch_enrich.node_enrich_meta(node) is not none -%}
                {%- do found.append(node) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{- return(found) -}}
{%- endmacro %}


{#-
    A value as a message shows it: JSON (strings quoted, control characters escaped,
    `.inf` as Infinity), cut to 80 characters.
-#}
{% macro shown(value) -%}
    {%- set text = tojson(value) -%}
    {%- if text is none -%}
        {%- set text = value | string -%}
    {%- endif -%}
    {{- return(text if text | length <= 80 else text[:77] ~ '...') -}}
{%- endmacro %}


{#-
    What no declaration value may hold, at any depth (keys included): a NUL character or a
    lone surrogate in a string (no warehouse text and no API request can carry them), a
    key that is not a string, a number that is not finite (`.inf`, `.nan`). Returns the
    first problem as "<path> <what>", or none.
-#}
{% macro unsafe_value_problem(value, path) -%}
    {%- set unsafe_text = '[\\x00\\ud800-\\udfff]' -%}
    {%- if value is string -%}
        {%- if modules.re.search(unsafe_text, value) -%}
            {%- do return(path ~ " contains a NUL character or a lone surrogate, got: " ~ batch_enrich.shown(value)
                ~ "; remove it") -%}
        {%- endif -%}
    {%- elif value is mapping -%}
        {%- for key, item in value.items() -%}
            {%- if key is not string -%}
                {%- do return(path ~ " has a key that is not a string: " ~ batch_enrich.shown(key) ~ " (keys are strings)") -%}
            {%- endif -%}
            {%- if modules.re.search(unsafe_text, key) -%}
                {%- do return(path ~ " has a key with a NUL character or a lone surrogate: "
                    ~ batch_enrich.shown(key) ~ "; remove it") -%}
            {%- endif -%}
            {%- set problem = batch_enrich.unsafe_value_problem(item, path ~ "." ~ key) -%}
            {%- if problem is not none -%}
                {%- do return(problem) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- elif value is boolean or value is none -%}
        {%- do return(none) -%}
    {%- elif value is number -%}
        {%- if not (value - value == 0) -%}
            {%- do return(path ~ " must be a finite number, got: " ~ batch_enrich.shown(value)) -%}
        {%- endif -%}
    {%- elif value is sequence -%}
        {%- for item in value -%}
            {%- set problem = batch_enrich.unsafe_value_problem(item, path ~ "[" ~ loop.index0 ~ "]") -%}
            {%- if problem is not none -%}
                {%- do return(problem) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{- return(none) -}}
{%- endmacro %}


{#- Whether `value` is a string with something other than whitespace. -#}
{% macro is_nonblank_text(value) -%}
    {{- return(value is string and value | trim | length > 0) -}}
{%- endmacro %}


{#- Whether `value` is a JSON Schema style list (a sequence that is neither text nor a mapping). -#}
{% macro is_list(value) -%}
    {{- return(value is sequence and value is not string and value is not mapping) -}}
{%- endmacro %}


{#-
    What is wrong with the JSON Schema at `where` (an object schema: output_schema or
    tool.input_schema), or none. The keywords the package turns into SQL
    (macros/validation.sql) are held, at every depth, to the JSON Schema meta-schema and
    to the rules connector/declaration.py adds: see subschema_problem. Finite numbers
    and clean text are checked for the whole declaration by unsafe_value_problem. (The
    connector checks the rest of the meta-schema; nothing else reaches SQL.)
-#}
{% macro schema_problem(schema, where) -%}
    {%- if schema is not mapping -%}
        {%- do return(where ~ " must be a JSON Schema object (a mapping), got: " ~ batch_enrich.shown(schema)) -%}
    {%- endif -%}
    {%- if schema.get('type') != 'object' -%}
        {%- do return(where ~ ' must be a JSON Schema with "type": "object", got type ' ~ batch_enrich.shown(schema.get('type'))) -%}
    {%- endif -%}
    {{- return(batch_enrich.subschema_problem(schema, where)) -}}
{%- endmacro %}


{#-
    What is wrong with the schema mapping at `where`, or none: its own keywords, then the
    schemas nested in it, depth first (each property's, then `items`). `type` a simple
    type or a non-empty list of distinct ones; `enum` a list; minimum, maximum,
    exclusiveMinimum and exclusiveMaximum numbers; minLength, maxLength, minItems and
    maxItems integers >= 0; `properties` a mapping of non-empty names to schema mappings;
    `required` a list of distinct names, each in properties; `items` a schema mapping.
-#}
{% macro subschema_problem(schema, where) -%}
    {%- set schema_types = ['string', 'integer', 'number', 'boolean', 'array', 'object', 'null'] -%}
    {%- if 'type' in schema -%}
        {%- set types = schema.get('type') -%}
        {%- set type_list = [types] if types is string else types -%}
        {%- if not batch_enrich.is_list(type_list) or type_list | length == 0
            or type_list | unique | list | length != type_list | length -%}
            {%- do return(where ~ ".type must be a type name or a non-empty list of distinct type names, got: " ~ batch_enrich.shown(types)) -%}
        {%- endif -%}
        {%- for type in type_list -%}
            {%- if type is not string or type not in schema_types -%}
                {%- do return(where ~ ".type " ~ batch_enrich.shown(type) ~ " is not one of " ~ schema_types | join(', ')) -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {%- if 'enum' in schema and not batch_enrich.is_list(schema.get('enum')) -%}
        {%- do return(where ~ ".enum must be a list, got: " ~ batch_enrich.shown(schema.get('enum'))) -%}
    {%- endif -%}
    {%- for bound in ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'] -%}
        {%- set limit = schema.get(bound) -%}
        {%- if bound in schema and (limit is boolean or limit is not number) -%}
            {%- do return(where ~ "." ~ bound ~ " must be a number, got: " ~ batch_enrich.shown(limit)) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for bound in ['minLength', 'maxLength', 'minItems', 'maxItems'] -%}
        {%- set limit = schema.get(bound) -%}
        {%- if bound in schema and (limit is boolean or limit is not integer or limit < 0) -%}
            {%- do return(where ~ "." ~ bound ~ " must be an integer >= 0, got: " ~ batch_enrich.shown(limit)) -%}
        {%- endif -%}
    {%- endfor -%}

    {%- set properties = schema.get('properties', {}) -%}
    {%- if properties is not mapping -%}
        {%- do return(where ~ ".properties must be a mapping of property names to schemas, got: " ~ batch_enrich.shown(properties)) -%}
    {%- endif -%}
    {%- for name, property in properties.items() -%}
        {%- set at = where ~ ".properties." ~ name -%}
        {%- if name | length == 0 -%}
            {%- do return(where ~ ".properties has an empty property name; name it") -%}
        {%- endif -%}
        {%- if property is not mapping -%}
            {%- do return(at ~ " must be a schema mapping, got: " ~ batch_enrich.shown(property)) -%}
        {%- endif -%}
        {%- set problem = batch_enrich.subschema_problem(property, at) -%}
        {%- if problem is not none -%}
            {%- do return(problem) -%}
        {%- endif -%}
    {%- endfor -%}

    {%- if 'required' in schema -%}
        {%- set required = schema.get('required') -%}
        {%- if not batch_enrich.is_list(required) or required | unique | list | length != required | length -%}
            {%- do return(where ~ ".required must be a list of distinct property names, got: " ~ batch_enrich.shown(required)) -%}
        {%- endif -%}
        {%- for name in required -%}
            {%- if name is not string -%}
                {%- do return(where ~ ".required must be a list of distinct property names, got: " ~ batch_enrich.shown(required)) -%}
            {%- endif -%}
            {%- if name not in properties -%}
                {%- do return(where ~ ".required names " ~ batch_enrich.shown(name) ~ ", which is not in properties") -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}

    {%- if 'items' in schema -%}
        {%- if schema.get('items') is not mapping -%}
            {%- do return(where ~ ".items must be a schema mapping, got: " ~ batch_enrich.shown(schema.get('items'))) -%}
        {%- endif -%}
        {%- set problem = batch_enrich.subschema_problem(schema.get('items'), where ~ '.items') -%}
        {%- if problem is not none -%}
            {%- do return(problem) -%}
        {%- endif -%}
    {%- endif -%}
    {{- return(none) -}}
{%- endmacro %}


{#-
    What is wrong with the node's declaration, or none: one message naming the model, the
    key, what the key must be and what it is. The rules are those of parse_declaration in
    connector/declaration.py, so that the package builds exactly the enrichments the
    connector submits (tests/unit/test_declaration.py and
    tests/integration/test_declaration_isolation.py hold the two to each other). The
    first problem found is returned (dbt's `return` ends the macro).
-#}
{% macro declaration_problem(node) -%}
    {%- set decl = batch_enrich.node_enrich_meta(node) -%}
    {%- set where = "model '" ~ node.name ~ "' (" ~ node.original_file_path ~ "), config.meta.enrich" -%}
    {%- set known = [
        'primary_key', 'model', 'max_tokens', 'prompt_column', 'system', 'output_schema',
        'tool', 'prompt_version', 'max_attempts', 'repair', 'max_requests_per_batch',
        'max_batch_bytes', 'flagged_model', 'budget_usd', 'budget_usd_per_day', 'dedupe', 'cache',
        'cache_ttl', 'cached_prefix', 'pilot_stratify_by',
    ] -%}

    {%- if decl is not mapping -%}
        {%- do return(where ~ " must be a mapping of keys, got: " ~ batch_enrich.shown(decl)) -%}
    {%- endif -%}
    {%- set unsafe = batch_enrich.unsafe_value_problem(decl, where) -%}
    {%- if unsafe is not none -%}
        {%- do return(unsafe) -%}
    {%- endif -%}
    {%- for key in decl -%}
        {%- if key not in known -%}
            {%- do return(where ~ "." ~ key ~ " is not a declaration key; known keys: " ~ known | join(', ')) -%}
        {%- endif -%}
    {%- endfor -%}

    {%- set pk = decl.get('primary_key') -%}
    {%- if pk is none -%}
        {%- do return(where ~ ".primary_key is required: a column name or a list of column names") -%}
    {%- endif -%}
    {%- set columns = [pk] if pk is string else pk -%}
    {%- if not batch_enrich.is_list(columns) or columns | length == 0 -%}
        {%- do return(where ~ ".primary_key must be a column name or a non-empty list of distinct column names, got: " ~ batch_enrich.shown(pk)) -%}
    {%- endif -%}
    {%- for column in columns -%}
        {%- if not batch_enrich.is_nonblank_text(column) -%}
            {%- do return(where ~ ".primary_key must list column names, got: " ~ batch_enrich.shown(pk)) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if columns | unique | list | length != columns | length -%}
        {%- do return(where ~ ".primary_key lists a column twice: " ~ batch_enrich.shown(pk)) -%}
    {%- endif -%}

    {%- if not batch_enrich.is_nonblank_text(decl.get('model')) -%}
        {%- do return(where ~ ".model is required: a Claude model id such as claude-haiku-4-5, got: " ~ batch_enrich.shown(decl.get('model'))) -%}
    {%- endif -%}

    {%- for key, minimum, maximum, required in [
        ('max_tokens', 1, none, true),
        ('max_attempts', 1, none, false),
        ('max_requests_per_batch', 1, 100000, false),
        ('max_batch_bytes', 1, 256000000, false),
    ] -%}
        {%- set value = decl.get(key) -%}
        {%- if value is none -%}
            {%- if required -%}
                {%- do return(where ~ "." ~ key ~ " is required: an integer >= " ~ minimum) -%}
            {%- endif -%}
        {%- elif value is boolean or value is not integer or value < minimum or (maximum is not none and value > maximum) -%}
            {%- do return(
                where ~ "." ~ key ~ " must be an integer " ~ (("between " ~ minimum ~ " and " ~ maximum) if maximum is not none else (">= " ~ minimum))
                ~ ", got: " ~ batch_enrich.shown(value)
            ) -%}
        {%- endif -%}
    {%- endfor -%}

    {%- for key in ['prompt_column', 'system', 'prompt_version', 'flagged_model', 'cached_prefix', 'pilot_stratify_by'] -%}
        {%- set value = decl.get(key) -%}
        {%- if value is not none and not batch_enrich.is_nonblank_text(value) -%}
            {%- do return(where ~ "." ~ key ~ " must be a non-empty string, got: " ~ batch_enrich.shown(value)) -%}
        {%- endif -%}
    {%- endfor -%}

    {%- for key in ['dedupe', 'cache'] -%}
        {%- if decl.get(key) is not none and decl.get(key) is not boolean -%}
            {%- do return(where ~ "." ~ key ~ " must be true or false, got: " ~ batch_enrich.shown(decl.get(key))) -%}
        {%- endif -%}
    {%- endfor -%}

    {%- for key in ['budget_usd', 'budget_usd_per_day'] -%}
        {%- set budget = decl.get(key) -%}
        {%- if budget is not none and (budget is boolean or budget is not number or budget <= 0) -%}
            {%- do return(where ~ "." ~ key ~ " must be a positive number, got: " ~ batch_enrich.shown(budget)) -%}
        {%- endif -%}
    {%- endfor -%}

    {%- if decl.get('cache_ttl') is not none and decl.get('cache_ttl') not in ['5m', '1h'] -%}
        {%- do return(where ~ '.cache_ttl must be "5m" or "1h", got: ' ~ batch_enrich.shown(decl.get('cache_ttl'))) -%}
    {%- endif -%}

    {%- if decl.get('output_schema') is not none -%}
        {%- set problem = batch_enrich.schema_problem(decl.get('output_schema'), where ~ '.output_schema') -%}
        {%- if problem is not none -%}
            {%- do return(problem) -%}
        {%- endif -%}
    {%- endif -%}
    {%- set tool = decl.get('tool') -%}
    {%- if tool is not none -%}
        {%- if tool is not mapping -%}
            {%- do return(where ~ ".tool must be a mapping {name, description?, input_schema}, got: " ~ batch_enrich.shown(tool)) -%}
        {%- endif -%}
        {%- for key in tool -%}
            {%- if key not in ['name', 'description', 'input_schema'] -%}
                {%- do return(where ~ ".tool." ~ key ~ " is not a tool key (name, description, input_schema)") -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if tool.get('name') is not string or not modules.re.fullmatch('[a-zA-Z0-9_-]{1,64}', tool.get('name')) -%}
            {%- do return(where ~ ".tool.name is required and must match ^[a-zA-Z0-9_-]{1,64}$, got: " ~ batch_enrich.shown(tool.get('name'))) -%}
        {%- endif -%}
        {%- if tool.get('input_schema') is none -%}
            {%- do return(where ~ ".tool.input_schema is required: a JSON Schema with type: object") -%}
        {%- endif -%}
        {%- set problem = batch_enrich.schema_problem(tool.get('input_schema'), where ~ '.tool.input_schema') -%}
        {%- if problem is not none -%}
            {%- do return(problem) -%}
        {%- endif -%}
        {%- if tool.get('description') is not none and not batch_enrich.is_nonblank_text(tool.get('description')) -%}
            {%- do return(where ~ ".tool.description must be a non-empty string, got: " ~ batch_enrich.shown(tool.get('description'))) -%}
        {%- endif -%}
    {%- endif -%}
    {%- if decl.get('output_schema') is not none and tool is not none -%}
        {%- do return(where ~ " declares both output_schema and tool; choose one") -%}
    {%- endif -%}

    {%- set repair = decl.get('repair') -%}
    {%- if repair is not none -%}
        {%- if repair is not mapping -%}
            {%- do return(where ~ ".repair must be a mapping {on_max_tokens, on_invalid, max_tokens_multiplier}, got: " ~ batch_enrich.shown(repair)) -%}
        {%- endif -%}
        {%- for key, value in repair.items() -%}
            {%- if key not in ['on_max_tokens', 'on_invalid', 'max_tokens_multiplier'] -%}
                {%- do return(where ~ ".repair." ~ key ~ " is not a repair key (on_max_tokens, on_invalid, max_tokens_multiplier)") -%}
            {%- endif -%}
        {%- endfor -%}
        {%- for key in ['on_max_tokens', 'on_invalid'] -%}
            {%- if repair.get(key) is not none and repair.get(key) is not boolean -%}
                {%- do return(where ~ ".repair." ~ key ~ " must be true or false, got: " ~ batch_enrich.shown(repair.get(key))) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- set multiplier = repair.get('max_tokens_multiplier') -%}
        {%- if multiplier is not none and (multiplier is boolean or multiplier is not number or multiplier < 1) -%}
            {%- do return(where ~ ".repair.max_tokens_multiplier must be a number >= 1, got: " ~ batch_enrich.shown(multiplier)) -%}
        {%- endif -%}
    {%- endif -%}
    {{- return(none) -}}
{%- endmacro %}


{#-
    Raise a compiler error unless the node's declaration follows the contract. The message
    names the model, the key and what the key must be. Only the models that compile this
    declaration fail (its flagged and enriched models, its max_pending_usd test); the
    shared models leave an invalid declaration out (valid_declarations).
-#}
{% macro validate_declaration(node) -%}
    {%- set problem = batch_enrich.declaration_problem(node) -%}
    {%- if problem is not none -%}
        {%- do exceptions.raise_compiler_error(
            "batch_enrich: invalid declaration: " ~ problem ~ ". Fix config.meta.enrich of model '"
            ~ node.name ~ "'; until then this enrichment is left out and the others build as usual."
        ) -%}
    {%- endif -%}
    {{- return(true) -}}
{%- endmacro %}


{#-
    The declarations of every declared model, split: `valid` the resolved declarations
    (resolve_declaration), `invalid` the names of the models whose declaration is wrong
    (each logged with its problem). Shared models build from `valid` only, so one bad
    declaration never stops the others.
-#}
{% macro valid_declarations() -%}
    {%- set split = {'valid': [], 'invalid': []} -%}
    {%- for node in batch_enrich.declared_nodes() -%}
        {%- set problem = batch_enrich.declaration_problem(node) -%}
        {%- if problem is none -%}
            {%- do split['valid'].append(batch_enrich.resolve_declaration(node)) -%}
        {%- else -%}
            {%- do split['invalid'].append(node.name) -%}
            {%- do log("batch_enrich: left out, invalid declaration: " ~ problem, info=true) -%}
        {%- endif -%}
    {%- endfor -%}
    {{- return(split) -}}
{%- endmacro %}


{#-
    The declaration of `enrichment`, validated, with defaults filled in and two derived
    keys: `primary_key` always a list, `schema` (the output_schema or the tool's
    input_schema, or none) and `name`. Raises if the model is missing or undeclared.
    Call it only when `execute` is true.
-#}
{% macro get_declaration(enrichment) -%}
    {%- set matches = [] -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model' and node.name == enrichment -%}
            {%- do matches.append(node) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if matches | length == 0 -%}
        {%- do exceptions.raise_compiler_error("batch_enrich: no enabled model named '" ~ enrichment ~ "' (the enrichment is named after its input model)") -%}
    {%- endif -%}
    {%- set declared = [] -%}
    {%- for node in matches if batch_enrich.node_enrich_meta(node) is not none -%}
        {%- do declared.append(node) -%}
    {%- endfor -%}
    {%- if declared | length == 0 -%}
        {%- do exceptions.raise_compiler_error("batch_enrich: model '" ~ enrichment ~ "' has no config.meta.enrich declaration") -%}
    {%- endif -%}
    {%- if declared | length > 1 -%}
        {%- do exceptions.raise_compiler_error("batch_enrich: more than one declared model is named '" ~ enrichment ~ "': " ~ declared | map(attribute='unique_id') | join(', ')) -%}
    {%- endif -%}
    {%- do batch_enrich.validate_declaration(declared[0]) -%}
    {{- return(batch_enrich.resolve_declaration(declared[0])) -}}
{%- endmacro %}


{#-
    A valid declaration (declaration_problem is none) with its defaults filled in. A key
    set to null means "not set", as in the connector: its default applies.
-#}
{% macro resolve_declaration(node) -%}
    {%- set raw = batch_enrich.node_enrich_meta(node) -%}
    {%- set decl = batch_enrich.declaration_defaults() -%}
    {%- set repair = decl['repair'].copy() -%}
    {%- for key, value in (raw.get('repair') or {}).items() if value is not none -%}
        {%- do repair.update({key: value}) -%}
    {%- endfor -%}
    {%- for key, value in raw.items() if value is not none -%}
        {%- do decl.update({key: value}) -%}
    {%- endfor -%}
    {%- do decl.update({'repair': repair, 'name': node.name}) -%}
    {%- if decl['primary_key'] is string -%}
        {%- do decl.update({'primary_key': [decl['primary_key']]}) -%}
    {%- endif -%}
    {%- if decl.get('flagged_model') is none -%}
        {%- do decl.update({'flagged_model': node.name ~ '__flagged'}) -%}
    {%- endif -%}
    {%- if decl['tool'] is not none -%}
        {%- do decl.update({'schema': decl['tool']['input_schema']}) -%}
    {%- else -%}
        {%- do decl.update({'schema': decl['output_schema']}) -%}
    {%- endif -%}
    {{- return(decl) -}}
{%- endmacro %}


{#-
    The fixed part of the request, as canonical text: everything that shapes the API
    request except the prompt text itself. Each part is labelled and separated by the
    ASCII unit separator (chr 31), so no two different requests share a text.
-#}
{% macro request_ingredients(decl) -%}
    {%- set sep = '\x1f' -%}
    {%- set parts = [
        'batch_enrich.request.v1',
        'model=' ~ decl['model'],
        'max_tokens=' ~ decl['max_tokens'],
        'system=' ~ (decl['system'] if decl['system'] is not none else ''),
        'output_schema=' ~ (tojson(decl['output_schema'], sort_keys=true) if decl['output_schema'] is not none else ''),
        'tool=' ~ (tojson(decl['tool'], sort_keys=true) if decl['tool'] is not none else ''),
        'prompt_version=' ~ decl['prompt_version'],
    ] -%}
    {#- only when set, so that declarations without it keep their request hashes -#}
    {%- if decl.get('cached_prefix') is not none -%}
        {%- do parts.append('cached_prefix=' ~ decl['cached_prefix']) -%}
    {%- endif -%}
    {%- do parts.append('prompt=') -%}
    {{- return(parts | join(sep)) -}}
{%- endmacro %}


{#- A fingerprint of everything validation depends on (changes force re-validation). -#}
{% macro declaration_hash(decl) -%}
    {{- return(local_md5(tojson({
        'schema': decl['schema'],
        'tool_name': decl['tool']['name'] if decl['tool'] is not none else none,
        'kind': 'tool' if decl['tool'] is not none else ('output_schema' if decl['output_schema'] is not none else 'text'),
    }, sort_keys=true))) -}}
{%- endmacro %}


{#-
    A SQL text literal, quotes doubled; the unit separator spelt with chr(31). A NUL
    character cannot be in SQL text: it is refused here (declarations are checked for it
    before, by unsafe_value_problem).
-#}
{% macro sql_text_literal(value) -%}
    {%- if '\x00' in (value | string) -%}
        {%- do exceptions.raise_compiler_error("batch_enrich: text with a NUL character cannot be a SQL literal: " ~ batch_enrich.shown(value | string)) -%}
    {%- endif -%}
    {%- set pieces = [] -%}
    {%- for piece in (value | string).split('\x1f') -%}
        {%- do pieces.append("'" ~ piece | replace("'", "''") ~ "'") -%}
    {%- endfor -%}
    {{- return('(' ~ pieces | join(' || chr(31) || ') ~ ')') -}}
{%- endmacro %}


{#-
    A SQL numeric literal for a number from a declaration: finite, not a boolean, rendered
    here (Python's spelling of an int or a float, e.g. 5, -2.5, 1e-05) and checked to be
    nothing but a numeric literal before it reaches SQL; in parentheses, so a negative
    number is safe after any operator.
-#}
{% macro sql_number(value) -%}
    {%- if value is boolean or value is not number or not (value - value == 0) -%}
        {%- do exceptions.raise_compiler_error("batch_enrich: not a finite number: " ~ batch_enrich.shown(value)) -%}
    {%- endif -%}
    {%- set text = value | string -%}
    {%- if not modules.re.fullmatch('-?[0-9]+(\\.[0-9]+)?(e[-+]?[0-9]+)?', text) -%}
        {%- do exceptions.raise_compiler_error("batch_enrich: not a plain number: " ~ batch_enrich.shown(value)) -%}
    {%- endif -%}
    {{- return('(' ~ text ~ ')') -}}
{%- endmacro %}
