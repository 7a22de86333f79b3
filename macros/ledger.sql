{#-
    The ledger DDL: the ONE definition of the connector's tables (docs/architecture.md §4).

    `ensure_ledger()` creates the schema, the tables and the version row if they are
    missing, and never touches existing data, so dbt (`on-run-start`) and the connector
    (`dbt run-operation batch_enrich.ensure_ledger`) may both run it, in any order, any
    number of times. It executes its statements itself, commits, and renders to an empty
    string, so it works the same from a hook and from run-operation.

    Bump `ledger_version()` (and LEDGER_VERSION in connector/sync.py) when the DDL
    changes, and add the change as an idempotent statement (`add column if not exists`).
-#}

{% macro ledger_version() -%}
    {{ return(6) }}
{%- endmacro %}


{% macro ledger_schema() -%}
    {{ return(var('batch_enrich_ledger_schema', 'enrich')) }}
{%- endmacro %}


{#-
    A quoted SQL identifier, embedded double quotes doubled. (adapter.quote and
    api.Relation do not escape, and the ledger schema is user input: a name such as
    `led"ger; drop table x; --` must stay one identifier.)
-#}
{% macro quote_identifier(name) -%}
    {{- return('"' ~ (name | string | replace('"', '""')) ~ '"') -}}
{%- endmacro %}


{#- `"<ledger schema>"."<identifier>"`, in the connection's database. -#}
{% macro ledger_relation(identifier) -%}
    {{- return(batch_enrich.quote_identifier(batch_enrich.ledger_schema()) ~ '.' ~ batch_enrich.quote_identifier(identifier)) -}}
{%- endmacro %}


{% macro ensure_ledger() -%}
    {%- if execute -%}
        {%- set statements = adapter.dispatch('ensure_ledger_statements', 'batch_enrich')() -%}
        {%- for sql in statements -%}
            {%- call statement('batch_enrich_ensure_ledger', auto_begin=True) -%}
                {{ sql }}
            {%- endcall -%}
        {%- endfor -%}
        {%- do adapter.commit() -%}
    {%- endif -%}
    {{- return('') -}}
{%- endmacro %}


{#-
    The statements, in order. `json_type` is jsonb on Postgres, json elsewhere.
    `with_results_key`: results_raw has its primary key `(batch_id, custom_id)`
    (DuckDB: no; the landing checks the batch's lines are unique instead, see
    duckdb__ensure_ledger_statements).
-#}
{% macro ledger_ddl(json_type, with_foreign_keys, with_results_key=true) -%}
    {%- set version = batch_enrich.ledger_relation('ledger_version') -%}
    {%- set batches = batch_enrich.ledger_relation('batches') -%}
    {%- set requests = batch_enrich.ledger_relation('requests') -%}
    {%- set results_raw = batch_enrich.ledger_relation('results_raw') -%}
    {%- set rejections = batch_enrich.ledger_relation('rejections') -%}
    {%- set shared_keys = batch_enrich.ledger_relation('shared_keys') -%}
    {%- set deferrals = batch_enrich.ledger_relation('deferrals') -%}
    {%- set orphan_batches = batch_enrich.ledger_relation('orphan_batches') -%}
    {%- set batch_tallies = batch_enrich.ledger_relation('batch_tallies') -%}
    {%- set statements = [] -%}

    {%- do statements.append(
        'create schema if not exists ' ~ batch_enrich.quote_identifier(batch_enrich.ledger_schema())
    ) -%}

    {%- do statements.append('create table if not exists ' ~ version ~ ' (
        version integer primary key,
        applied_at timestamptz not null default now()
    )') -%}

    {%- do statements.append('create table if not exists ' ~ batches ~ ' (
        submission_id text primary key,
        batch_id text unique,
        enrichment text not null,
        status text not null,
        request_count integer not null,
        body_bytes bigint not null,
        processing_status text,
        succeeded_count integer,
        errored_count integer,
        canceled_count integer,
        expired_count integer,
        intent_at timestamptz not null,
        submitted_at timestamptz,
        api_created_at timestamptz,
        expires_at timestamptz,
        ended_at timestamptz,
        landed_at timestamptz,
        last_polled_at timestamptz,
        landed_lines integer,
        note text
    )') -%}

    {%- set submission_reference = ' references ' ~ batches ~ ' (submission_id)' if with_foreign_keys else '' -%}
    {%- do statements.append('create table if not exists ' ~ requests ~ ' (
        submission_id text not null' ~ submission_reference ~ ',
        custom_id text not null,
        enrichment text not null,
        primary_key ' ~ json_type ~ ' not null,
        request_hash text not null,
        attempt integer not null,
        flag_reason text not null,
        model text not null,
        prompt_version text not null,
        max_tokens integer not null,
        params_bytes integer not null,
        input_hash text,
        primary key (submission_id, custom_id)
    )') -%}

    {#- Added after the first draft of the contract: ledgers created without it get it here. -#}
    {%- do statements.append(
        'alter table ' ~ requests ~ ' add column if not exists input_hash text'
    ) -%}

    {#- Version 2: the estimated cost of each request when it was submitted (budgets). -#}
    {%- do statements.append(
        'alter table ' ~ requests ~ ' add column if not exists estimated_usd double precision'
    ) -%}

    {#-
        Version 2, dedupe: the other keys a request serves. `custom_id` is the request
        sent (a row of requests); `member_custom_id` and `primary_key` are the row that
        shares its result without a request of its own.
    -#}
    {%- do statements.append('create table if not exists ' ~ shared_keys ~ ' (
        submission_id text not null,
        custom_id text not null,
        member_custom_id text not null,
        primary_key ' ~ json_type ~ ' not null,
        primary key (submission_id, member_custom_id)
    )') -%}

    {#- Version 2, budgets: flagged rows a budget held back, oldest first next time. -#}
    {%- do statements.append('create table if not exists ' ~ deferrals ~ ' (
        enrichment text not null,
        custom_id text not null,
        first_deferred_at timestamptz not null,
        last_deferred_at timestamptz not null,
        primary key (enrichment, custom_id)
    )') -%}

    {#-
        Version 3, exactly-once under real operations (docs/ledger.md):
        marker_custom_id   the custom_id of the one-token marker request sent in the batch
                           body; its result line proves which intent a batch belongs to
        create_started_at  when the last create call for this intent started (null: none
                           did, so no batch can exist)
        reconcile_seen_at  when a sync holding the sync guard first found the intent
                           unresolved (its creator was gone by then); the grace counts
                           from here
    -#}
    {%- do statements.append(
        'alter table ' ~ batches ~ ' add column if not exists marker_custom_id text'
    ) -%}
    {%- do statements.append(
        'alter table ' ~ batches ~ ' add column if not exists create_started_at timestamptz'
    ) -%}
    {%- do statements.append(
        'alter table ' ~ batches ~ ' add column if not exists reconcile_seen_at timestamptz'
    ) -%}

    {#-
        Version 3: batches on the API that this ledger provably created (their marker
        names one of its intents) but that no batch row holds: a create that went
        through after its intent was abandoned. Billed, not landed; shown by
        `enrich status`.
    -#}
    {%- do statements.append('create table if not exists ' ~ orphan_batches ~ ' (
        batch_id text primary key,
        submission_id text not null,
        enrichment text not null,
        request_count integer,
        found_at timestamptz not null,
        note text
    )') -%}

    {#-
        Version 4: each landed batch's outcomes and token usage (per model), computed once
        from its result lines by the connector after landing, so that `enrich status`
        sums a row per batch instead of parsing every line. Derived data: the lines in
        results_raw stay the record (enrich_costs prices them row by row).
    -#}
    {%- do statements.append('create table if not exists ' ~ batch_tallies ~ ' (
        batch_id text not null,
        enrichment text not null,
        model text not null,
        landed_at timestamptz not null,
        requests bigint not null,
        succeeded bigint not null,
        failed_retryable bigint not null,
        failed_terminal bigint not null,
        missing bigint not null,
        input_tokens bigint not null,
        output_tokens bigint not null,
        cache_write_5m_tokens bigint not null,
        cache_write_1h_tokens bigint not null,
        cache_read_tokens bigint not null,
        primary key (batch_id, model)
    )') -%}

    {%- do statements.append('create table if not exists ' ~ results_raw ~ ' ('
        ~ batch_enrich.results_raw_columns()
        ~ (',
        primary key (batch_id, custom_id)' if with_results_key else '') ~ '
    )') -%}

    {%- do statements.append('create table if not exists ' ~ rejections ~ ' (
        enrichment text not null,
        primary_key ' ~ json_type ~ ',
        reason text not null,
        seen_at timestamptz not null
    )') -%}

    {%- do statements.append(
        'insert into ' ~ version ~ ' (version) select ' ~ batch_enrich.ledger_version()
        ~ ' where not exists (select 1 from ' ~ version ~ ' where version = '
        ~ batch_enrich.ledger_version() ~ ')'
    ) -%}

    {{- return(statements) -}}
{%- endmacro %}


{% macro default__ensure_ledger_statements() -%}
    {{- return(batch_enrich.ledger_ddl('json', true)) -}}
{%- endmacro %}


{#-
    Postgres: jsonb keys; one transaction that first takes an advisory lock, so a dbt
    run and the connector starting together do not race on `create ... if not exists`
    (which is not concurrency-safe on its own). The lock key is derived from the schema
    name, so two ledgers in one database do not wait for each other.
-#}
{% macro postgres__ensure_ledger_statements() -%}
    {%- set lock = "select pg_advisory_xact_lock(hashtext('batch_enrich.ledger.' || '"
        ~ batch_enrich.ledger_schema() | replace("'", "''") ~ "'))" -%}
    {%- set statements = [lock] + batch_enrich.ledger_ddl('jsonb', true) -%}
    {#-
        Version 3: dedupe looks up a request identical to a row's (in flight or
        succeeded) once per chunk. Postgres only: DuckDB scans the column store fast, and
        an index there would make every later `alter table ... add column` fail.
    -#}
    {%- do statements.append(
        'create index if not exists requests_dedupe_lookup on '
        ~ batch_enrich.ledger_relation('requests') ~ ' (enrichment, request_hash, max_tokens)'
    ) -%}
    {#-
        The latest landed results first (the connector's cost calibration, on every sync,
        reads the most recent 20,000 succeeded lines): without it, a sort of every line.
    -#}
    {%- do statements.append(
        'create index if not exists results_raw_landed_at on '
        ~ batch_enrich.ledger_relation('results_raw') ~ ' (landed_at)'
    ) -%}
    {#-
        Version 5: the submit checks each chunk of flagged rows against the ledger by
        key (connector queries.HISTORY): without these, every chunk read every request
        of the enrichment, quadratic over a large submit.
    -#}
    {%- do statements.append(
        'create index if not exists requests_key_lookup on '
        ~ batch_enrich.ledger_relation('requests') ~ ' (enrichment, custom_id)'
    ) -%}
    {%- do statements.append(
        'create index if not exists shared_keys_member_lookup on '
        ~ batch_enrich.ledger_relation('shared_keys') ~ ' (member_custom_id)'
    ) -%}
    {%- do statements.append(batch_enrich.postgres__try_parse_json_function_ddl()) -%}
    {{- return(statements) -}}
{%- endmacro %}


{#-
    DuckDB: json keys, and no foreign key from requests to batches. DuckDB checks foreign
    keys eagerly and refuses any update of an indexed column of a referenced row (the
    connector sets `batches.batch_id`, which is unique), so the constraint would break
    the batch state machine. The connector guarantees the relationship instead.
-#}
{% macro results_raw_columns() -%}
    {{- return('
        batch_id text not null,
        custom_id text not null,
        result_type text not null,
        line json not null,
        landed_at timestamptz not null') -}}
{%- endmacro %}


{#-
    DuckDB (the change of version 6, with connector.sync.LEDGER_VERSION): results_raw
    has no primary key. DuckDB keeps a primary key's ART
    index whole in memory and updates it row by row: it was a third of a landing's time
    and hundreds of MB at a million lines. One batch's lines land in one transaction
    that also checks that their custom_ids are unique (connector/ledger/duckdb.py), and
    a batch lands once (its status moves to `landed` in that transaction), so
    `(batch_id, custom_id)` stays unique (docs/ledger.md). A ledger whose table has the
    key gets it rebuilt without, once (DuckDB cannot drop a key): the statements check
    for the key, so they run whatever the version row says.
-#}
{% macro duckdb__ensure_ledger_statements() -%}
    {%- set statements = batch_enrich.ledger_ddl('json', false, with_results_key=false) -%}
    {%- set keyed = run_query(
        "select count(*) from duckdb_constraints() where schema_name = '"
        ~ (batch_enrich.ledger_schema() | replace("'", "''"))
        ~ "' and table_name = 'results_raw' and constraint_type = 'PRIMARY KEY'"
        ~ " and database_name = current_database()"
    ) -%}
    {%- if keyed.columns[0].values()[0] > 0 -%}
        {%- set results_raw = batch_enrich.ledger_relation('results_raw') -%}
        {%- set rebuilt = batch_enrich.ledger_relation('results_raw_v6') -%}
        {%- do statements.append('drop table if exists ' ~ rebuilt) -%}
        {%- do statements.append('create table ' ~ rebuilt ~ ' ('
            ~ batch_enrich.results_raw_columns() ~ '
        )') -%}
        {%- do statements.append('insert into ' ~ rebuilt ~ ' select batch_id, custom_id, '
            ~ 'result_type, line, landed_at from ' ~ results_raw) -%}
        {%- do statements.append('drop table ' ~ results_raw) -%}
        {%- do statements.append('alter table ' ~ rebuilt ~ ' rename to '
            ~ batch_enrich.quote_identifier('results_raw')) -%}
    {%- endif -%}
    {{- return(statements) -}}
{%- endmacro %}


{#-
    Postgres 15 has no `pg_input_is_valid`, and a failing `::jsonb` cast aborts the whole
    query, so model output that is not JSON is parsed through this tiny function, which
    lives beside the ledger. `create or replace` runs under the advisory lock above. It
    is parallel unsafe: its exception block opens a subtransaction, which Postgres
    refuses inside a parallel query ("cannot start subtransactions during a parallel
    operation"), so queries that call it run without parallel workers.
-#}
{% macro postgres__try_parse_json_function_ddl() -%}
    {%- set fn = batch_enrich.ledger_relation('try_parse_jsonb') -%}
    {{- return('create or replace function ' ~ fn ~ '(value text) returns jsonb
        language plpgsql immutable parallel unsafe as $body$
        begin
            return value::jsonb;
        exception when others then
            return null;
        end
        $body$') -}}
{%- endmacro %}
