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
    Raise a compiler error, naming the model and the key, unless the node's declaration
    follows the contract.
-#}
{% macro validate_declaration(node) -%}
    {%- set decl = batch_enrich.node_enrich_meta(node) -%}
    {%- set where = "model '" ~ node.name ~ "' (" ~ node.original_file_path ~ "), config.meta.enrich" -%}
    {%- set known = [
        'primary_key', 'model', 'max_tokens', 'prompt_column', 'system', 'output_schema',
        'tool', 'prompt_version', 'max_attempts', 'repair', 'max_requests_per_batch',
        'max_batch_bytes', 'flagged_model', 'budget_usd', 'budget_usd_per_day', 'dedupe', 'cache',
        'cache_ttl', 'cached_prefix',
    ] -%}
    {%- set schema_types = ['string', 'integer', 'number', 'boolean', 'array', 'object', 'null'] -%}

    {%- if decl is not mapping -%}
        {%- do exceptions.raise_compiler_error(where ~ " must be a mapping, got: " ~ decl) -%}
    {%- endif -%}
    {%- for key in decl -%}
        {%- if key not in known -%}
            {%- do exceptions.raise_compiler_error(where ~ "." ~ key ~ " is not a declaration key; known keys: " ~ known | join(', ')) -%}
        {%- endif -%}
    {%- endfor -%}

    {%- set pk = decl.get('primary_key') -%}
    {%- if pk is string -%}
        {%- set pk = [pk] -%}
    {%- endif -%}
    {%- if pk is none or pk is not sequence or pk is mapping or pk | length == 0 -%}
        {%- do exceptions.raise_compiler_error(where ~ ".primary_key is required: a column name or a list of column names") -%}
    {%- endif -%}
    {%- for column in pk -%}
        {%- if column is not string or column | length == 0 -%}
            {%- do exceptions.raise_compiler_error(where ~ ".primary_key must list column names, got: " ~ column) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if pk | unique | list | length != pk | length -%}
        {%- do exceptions.raise_compiler_error(where ~ ".primary_key lists a column twice: " ~ pk | join(', ')) -%}
    {%- endif -%}

    {%- if decl.get('model') is not string or decl.get('model') | length == 0 -%}
        {%- do exceptions.raise_compiler_error(where ~ ".model is required: a Claude model id such as claude-haiku-4-5") -%}
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
                {%- do exceptions.raise_compiler_error(where ~ "." ~ key ~ " is required: an integer >= " ~ minimum) -%}
            {%- endif -%}
        {%- elif value is boolean or value is not integer or value < minimum or (maximum is not none and value > maximum) -%}
            {%- do exceptions.raise_compiler_error(
                where ~ "." ~ key ~ " must be an integer between " ~ minimum ~ " and "
                ~ (maximum if maximum is not none else "any") ~ ", got: " ~ value
            ) -%}
        {%- endif -%}
    {%- endfor -%}

    {%- for key in ['prompt_column', 'system', 'prompt_version', 'flagged_model'] -%}
        {%- set value = decl.get(key) -%}
        {%- if value is not none and (value is not string or (key != 'system' and value | length == 0)) -%}
            {%- do exceptions.raise_compiler_error(where ~ "." ~ key ~ " must be a non-empty string, got: " ~ value) -%}
        {%- endif -%}
    {%- endfor -%}

    {%- for key in ['dedupe', 'cache'] -%}
        {%- if decl.get(key) is not none and decl.get(key) is not boolean -%}
            {%- do exceptions.raise_compiler_error(where ~ "." ~ key ~ " must be true or false, got: " ~ decl.get(key)) -%}
        {%- endif -%}
    {%- endfor -%}

    {%- for key in ['budget_usd', 'budget_usd_per_day'] -%}
        {%- set budget = decl.get(key) -%}
        {%- if budget is not none and (budget is boolean or budget is not number or budget <= 0) -%}
            {%- do exceptions.raise_compiler_error(where ~ "." ~ key ~ " must be a positive number, got: " ~ budget) -%}
        {%- endif -%}
    {%- endfor -%}

    {%- if decl.get('cache_ttl') is not none and decl.get('cache_ttl') not in ['5m', '1h'] -%}
        {%- do exceptions.raise_compiler_error(where ~ ".cache_ttl must be \"5m\" or \"1h\", got: " ~ decl.get('cache_ttl')) -%}
    {%- endif -%}
    {%- set prefix = decl.get('cached_prefix') -%}
    {%- if prefix is not none and (prefix is not string or prefix | trim | length == 0) -%}
        {%- do exceptions.raise_compiler_error(where ~ ".cached_prefix must be a non-empty string, got: " ~ prefix) -%}
    {%- endif -%}

    {%- if decl.get('output_schema') is not none and decl.get('tool') is not none -%}
        {%- do exceptions.raise_compiler_error(where ~ " declares both output_schema and tool; choose one") -%}
    {%- endif -%}

    {%- set schema_key = none -%}
    {%- if decl.get('output_schema') is not none -%}
        {%- set schema_key = 'output_schema' -%}
        {%- set schema = decl.get('output_schema') -%}
    {%- elif decl.get('tool') is not none -%}
        {%- set tool = decl.get('tool') -%}
        {%- if tool is not mapping -%}
            {%- do exceptions.raise_compiler_error(where ~ ".tool must be a mapping {name, description?, input_schema}") -%}
        {%- endif -%}
        {%- for key in tool -%}
            {%- if key not in ['name', 'description', 'input_schema'] -%}
                {%- do exceptions.raise_compiler_error(where ~ ".tool." ~ key ~ " is not a tool key (name, description, input_schema)") -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if tool.get('name') is not string or not modules.re.match('^[a-zA-Z0-9_-]{1,64}$', tool.get('name')) -%}
            {%- do exceptions.raise_compiler_error(where ~ ".tool.name is required and must match ^[a-zA-Z0-9_-]{1,64}$, got: " ~ tool.get('name')) -%}
        {%- endif -%}
        {%- if tool.get('input_schema') is none -%}
            {%- do exceptions.raise_compiler_error(where ~ ".tool.input_schema is required") -%}
        {%- endif -%}
        {%- set schema_key = 'tool.input_schema' -%}
        {%- set schema = tool.get('input_schema') -%}
    {%- endif -%}

    {%- if schema_key is not none -%}
        {%- if schema is not mapping or schema.get('type') != 'object' -%}
            {%- do exceptions.raise_compiler_error(where ~ "." ~ schema_key ~ " must be a JSON Schema object with type: object") -%}
        {%- endif -%}
        {%- set properties = schema.get('properties') or {} -%}
        {%- if properties is not mapping -%}
            {%- do exceptions.raise_compiler_error(where ~ "." ~ schema_key ~ ".properties must be a mapping") -%}
        {%- endif -%}
        {%- set required = schema.get('required') or [] -%}
        {%- if required is string or required is mapping or required is not sequence -%}
            {%- do exceptions.raise_compiler_error(where ~ "." ~ schema_key ~ ".required must be a list of property names") -%}
        {%- endif -%}
        {%- for name in required -%}
            {%- if name not in properties -%}
                {%- do exceptions.raise_compiler_error(where ~ "." ~ schema_key ~ ".required names '" ~ name ~ "', which is not in properties") -%}
            {%- endif -%}
        {%- endfor -%}
        {%- for name, property in properties.items() -%}
            {%- if property is not mapping -%}
                {%- do exceptions.raise_compiler_error(where ~ "." ~ schema_key ~ ".properties." ~ name ~ " must be a mapping") -%}
            {%- endif -%}
            {%- set types = property.get('type') -%}
            {%- set types = [types] if types is string else (types or []) -%}
            {%- for type in types -%}
                {%- if type not in schema_types -%}
                    {%- do exceptions.raise_compiler_error(where ~ "." ~ schema_key ~ ".properties." ~ name ~ ".type '" ~ type ~ "' is not one of " ~ schema_types | join(', ')) -%}
                {%- endif -%}
            {%- endfor -%}
            {%- if property.get('enum') is not none and (property.get('enum') is string or property.get('enum') is mapping or property.get('enum') is not sequence) -%}
                {%- do exceptions.raise_compiler_error(where ~ "." ~ schema_key ~ ".properties." ~ name ~ ".enum must be a list") -%}
            {%- endif -%}
            {%- for bound in ['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'] -%}
                {%- set limit = property.get(bound) -%}
                {%- if limit is not none and (limit is boolean or limit is not number) -%}
                    {%- do exceptions.raise_compiler_error(where ~ "." ~ schema_key ~ ".properties." ~ name ~ "." ~ bound ~ " must be a number") -%}
                {%- endif -%}
            {%- endfor -%}
        {%- endfor -%}
    {%- endif -%}

    {%- set repair = decl.get('repair') -%}
    {%- if repair is not none -%}
        {%- if repair is not mapping -%}
            {%- do exceptions.raise_compiler_error(where ~ ".repair must be a mapping {on_max_tokens, on_invalid, max_tokens_multiplier}") -%}
        {%- endif -%}
        {%- for key, value in repair.items() -%}
            {%- if key in ['on_max_tokens', 'on_invalid'] -%}
                {%- if value is not boolean -%}
                    {%- do exceptions.raise_compiler_error(where ~ ".repair." ~ key ~ " must be true or false, got: " ~ value) -%}
                {%- endif -%}
            {%- elif key == 'max_tokens_multiplier' -%}
                {%- if value is boolean or value is not number or value < 1 -%}
                    {%- do exceptions.raise_compiler_error(where ~ ".repair.max_tokens_multiplier must be a number >= 1, got: " ~ value) -%}
                {%- endif -%}
            {%- else -%}
                {%- do exceptions.raise_compiler_error(where ~ ".repair." ~ key ~ " is not a repair key (on_max_tokens, on_invalid, max_tokens_multiplier)") -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
    {{- return(true) -}}
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
    {{- return(batch_enrich.resolve_declaration(declared[0])) -}}
{%- endmacro %}


{% macro resolve_declaration(node) -%}
    {%- do batch_enrich.validate_declaration(node) -%}
    {%- set raw = batch_enrich.node_enrich_meta(node) -%}
    {%- set decl = batch_enrich.declaration_defaults() -%}
    {%- set repair = decl['repair'].copy() -%}
    {%- do repair.update(raw.get('repair') or {}) -%}
    {%- do decl.update(raw) -%}
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


{#- A SQL text literal, quotes doubled; the unit separator spelt with chr(31). -#}
{% macro sql_text_literal(value) -%}
    {%- set pieces = [] -%}
    {%- for piece in (value | string).split('\x1f') -%}
        {%- do pieces.append("'" ~ piece | replace("'", "''") ~ "'") -%}
    {%- endfor -%}
    {{- return('(' ~ pieces | join(' || chr(31) || ') ~ ')') -}}
{%- endmacro %}
