{#-
    The landed_at from which an incremental parse model reprocesses results: the newest
    landed_at it already holds, minus `batch_enrich_lookback_minutes`. The lookback covers
    landing transactions that started earlier but committed after a dbt run had already
    seen newer lines (landed_at is stamped inside the landing transaction). Rows reprocessed
    replace themselves (unique key batch_id, custom_id). An empty table starts at 1970.
-#}
{% macro incremental_cutoff(relation, column='landed_at') -%}
    (
        select
            coalesce(
                {{ dbt.dateadd('minute', -1 * var('batch_enrich_lookback_minutes', 60) | int, 'max(' ~ column ~ ')') }},
                cast('1970-01-01 00:00:00+00' as timestamp with time zone)
            )
        from {{ relation }}
    )
{%- endmacro %}


{#-
    Incremental marts (docs/output-models.md, "Incremental models").

    Every incremental model downstream of the parse models rebuilds only the rows of the
    keys that something touched since its own last build, and records each build in
    int_enrich__build_log (in the same transaction as the build, by a post-hook):

      stamp        run_started_at of the build, the same in every model of one dbt run;
                   the intermediate models write it into the rows they change
                   (int_enrich__results_validated.validated_at,
                   int_enrich__request_outcomes.changed_at), so that a later model reads
                   the rows changed after its own last stamp;
      fingerprint  what makes every row change at once (the package's logic version, the
                   price seed, the declarations, the live versions); when it differs from
                   the last build's, the model recomputes every row (still incrementally
                   materialized: touched = everything).

    A model without a log row (built before this log existed, or whose fingerprint
    changed) recomputes everything; so does `--full-refresh`.
-#}

{#- Bumped when a change to the package's SQL changes the rows of incremental models. -#}
{% macro incremental_logic_version() -%}
    {{- return('batch_enrich.incremental.v1') -}}
{%- endmacro %}


{#- This build's stamp as text: run_started_at in UTC, to the microsecond. -#}
{% macro build_stamp_text() -%}
    {{- return(run_started_at.strftime('%Y-%m-%d %H:%M:%S.%f') ~ '+00:00') -}}
{%- endmacro %}


{#- A stamp (text) as a timestamp with time zone literal. -#}
{% macro stamp_literal(stamp_text) -%}
    cast({{ batch_enrich.sql_text_literal(stamp_text) }} as timestamp with time zone)
{%- endmacro %}


{#- This build's stamp as a timestamp with time zone. -#}
{% macro build_stamp() -%}
    {{- batch_enrich.stamp_literal(batch_enrich.build_stamp_text()) -}}
{%- endmacro %}


{#- The fingerprint of a list of values (each rendered as text): an md5 hex digest. -#}
{% macro fingerprint(parts) -%}
    {%- set texts = [batch_enrich.incremental_logic_version()] -%}
    {%- for part in parts -%}
        {%- do texts.append(tojson(part, sort_keys=true) if part is not string else part) -%}
    {%- endfor -%}
    {{- return(local_md5(texts | join('\x1f'))) -}}
{%- endmacro %}


{#- Every row of a (small) relation as a list of texts, ordered: for fingerprints. -#}
{% macro relation_rows_text(relation, columns) -%}
    {%- if not execute -%}
        {{- return([]) -}}
    {%- endif -%}
    {%- set query -%}
        select {% for column in columns %}cast({{ batch_enrich.column_ref(column) }} as text){% if not loop.last %}, {% endif %}{% endfor %}
        from {{ relation }}
        order by {% for column in columns %}{{ loop.index }}{% if not loop.last %}, {% endif %}{% endfor %}
    {%- endset -%}
    {%- set rows = [] -%}
    {%- for row in run_query(query).rows -%}
        {%- do rows.append(row.values() | map('string') | list) -%}
    {%- endfor -%}
    {{- return(rows) -}}
{%- endmacro %}


{#- The live versions (int_enrich__live_versions), as rows of text: a fingerprint part. -#}
{% macro live_versions_fingerprint_part(enrichment=none) -%}
    {%- set relation = ref('batch_enrich', 'int_enrich__live_versions') -%}
    {%- set kept = [] -%}
    {%- for row in batch_enrich.relation_rows_text(relation, ['enrichment', 'model', 'prompt_version']) -%}
        {%- if enrichment is none or row[0] == enrichment -%}
            {%- do kept.append(row) -%}
        {%- endif -%}
    {%- endfor -%}
    {{- return(kept) -}}
{%- endmacro %}


{#- The price seed, as rows of text: a fingerprint part. -#}
{% macro prices_fingerprint_part() -%}
    {%- set relation = ref('batch_enrich', 'batch_enrich_model_prices') -%}
    {{- return(batch_enrich.relation_rows_text(relation, [
        'model', 'input_usd_per_mtok', 'output_usd_per_mtok', 'cache_write_5m_multiplier',
        'cache_write_1h_multiplier', 'cache_read_multiplier', 'batch_discount',
    ])) -}}
{%- endmacro %}


{#-
    The stamp of this model's last build, as a timestamp literal, when the model is built
    incrementally now and its last build had the same fingerprint; none otherwise (build
    or recompute everything). Compile time only (it reads int_enrich__build_log).
-#}
{% macro incremental_since(fingerprint) -%}
    {%- set log = ref('batch_enrich', 'int_enrich__build_log') -%}
    {%- if not execute or not is_incremental() -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set query -%}
        select stamp, fingerprint
        from {{ log }}
        where relation_name = {{ batch_enrich.sql_text_literal(this.render()) }}
        order by built_at desc
        limit 1
    {%- endset -%}
    {%- set rows = run_query(query).rows -%}
    {%- if rows | length == 0 or rows[0][1] != fingerprint -%}
        {{- return(none) -}}
    {%- endif -%}
    {{- return(batch_enrich.stamp_literal(rows[0][0])) -}}
{%- endmacro %}


{#-
    Post-hook of an incremental model: this build, with its fingerprint, replaces the
    model's earlier rows in int_enrich__build_log. It runs inside the model's
    transaction, so a build that fails leaves the log as it was.
-#}
{% macro record_build(fingerprint) -%}
    {%- if not execute -%}
        {{- return('') -}}
    {%- endif -%}
    {{- return(adapter.dispatch('record_build', 'batch_enrich')(fingerprint)) -}}
{%- endmacro %}

{% macro default__record_build(fingerprint) -%}
    {%- set log = ref('batch_enrich', 'int_enrich__build_log') -%}
    {%- set name = batch_enrich.sql_text_literal(this.render()) -%}
    delete from {{ log }} where relation_name = {{ name }};
    insert into {{ log }} (relation_name, stamp, fingerprint, built_at)
    values (
        {{ name }},
        {{ batch_enrich.sql_text_literal(batch_enrich.build_stamp_text()) }},
        {{ batch_enrich.sql_text_literal(fingerprint) }},
        {{ batch_enrich.build_stamp() }}
    )
{%- endmacro %}


{#-
    The incremental strategy of the package's marts (`incremental_strategy:
    batch_enrich_replace`): replace whole partitions. The model's incremental SQL
    returns, for every partition it touched, that partition's new rows, or one row with
    the partition's columns and `batch_enrich_replace = 'partition'` when none is left
    (a partition that only loses rows). The partition columns are the config's
    `meta.batch_enrich_partition_by` (never null). Every row of those partitions is
    deleted, then the new rows (batch_enrich_replace null) are inserted.

    Dispatched: a warehouse without delete (Spark on Parquet: append and insert_overwrite
    only) supplies its own, or builds the models as tables (`incremental_materialization`).
-#}
{% macro get_incremental_batch_enrich_replace_sql(arg_dict) -%}
    {{- return(adapter.dispatch('replace_partitions_sql', 'batch_enrich')(arg_dict)) -}}
{%- endmacro %}

{% macro default__replace_partitions_sql(arg_dict) -%}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set temp = arg_dict['temp_relation'] -%}
    {%- set partition_by = (config.get('meta') or {}).get('batch_enrich_partition_by') -%}
    {%- if not partition_by -%}
        {%- do exceptions.raise_compiler_error(
            this ~ ": incremental_strategy batch_enrich_replace needs meta.batch_enrich_partition_by"
        ) -%}
    {%- endif -%}
    {%- set quoted = [] -%}
    {%- for column in partition_by -%}
        {%- do quoted.append(batch_enrich.column_ref(column)) -%}
    {%- endfor -%}
    {%- set partition_columns = quoted | join(', ') -%}
    {#- a column the table lacks (a table built by an earlier version) is added first;
        such a build has no log row, so it recomputes every row -#}
    {%- set target_names = adapter.get_columns_in_relation(target) | map(attribute='name') | map('lower') | list -%}
    {%- set missing = [] -%}
    {%- set columns = [] -%}
    {%- for column in adapter.get_columns_in_relation(temp) if column.name | lower != 'batch_enrich_replace' -%}
        {%- do columns.append(adapter.quote(column.name)) -%}
        {%- if column.name | lower not in target_names -%}
            {%- do missing.append(column) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if missing -%}
        {%- do alter_relation_add_remove_columns(target, missing, none) -%}
    {%- endif -%}
    delete from {{ target }}
    where ({{ partition_columns }}) in (
        select {{ partition_columns }} from {{ temp }}
    );
    insert into {{ target }} ({{ columns | join(', ') }})
    select {{ columns | join(', ') }}
    from {{ temp }}
    {%- if columns | length < adapter.get_columns_in_relation(temp) | length %}
    where batch_enrich_replace is null
    {%- endif %}
{%- endmacro %}


{#-
    The materialization of the package's incremental marts: `incremental`, or `table`
    on a warehouse whose port cannot replace partitions (every build is then a full
    rebuild, and `is_incremental()` is false).
-#}
{% macro incremental_materialization() -%}
    {{- return(adapter.dispatch('incremental_materialization', 'batch_enrich')()) -}}
{%- endmacro %}

{% macro default__incremental_materialization() -%}
    {{- return('incremental') -}}
{%- endmacro %}


{#- Indexes on these columns (Postgres: the deletes of an incremental build find rows by them). -#}
{% macro key_indexes(column_lists) -%}
    {{- return(adapter.dispatch('key_indexes', 'batch_enrich')(column_lists)) -}}
{%- endmacro %}

{% macro default__key_indexes(column_lists) -%}
    {{- return([]) -}}
{%- endmacro %}

{% macro postgres__key_indexes(column_lists) -%}
    {%- set indexes = [] -%}
    {%- for columns in column_lists -%}
        {%- do indexes.append({'columns': columns}) -%}
    {%- endfor -%}
    {{- return(indexes) -}}
{%- endmacro %}


{#- Whether two rows (aliases) differ in any of these columns (nulls compare equal). -#}
{% macro rows_differ(columns, left_alias, right_alias) -%}
    (
        {%- for column in columns %}
        {% if not loop.first %}or {% endif %}{{ batch_enrich.column_ref(column, left_alias) }} is distinct from {{ batch_enrich.column_ref(column, right_alias) }}
        {%- endfor %}
    )
{%- endmacro %}


{#-
    The fingerprint of each incremental model: what, when it changes, changes every row
    (besides the package's logic version). `relation_name` names an enriched table.
-#}
{% macro model_fingerprint(model_name, enrichment=none) -%}
    {%- set parts = [model_name] -%}
    {%- if model_name in ['enrich_costs', 'enrich_costs_daily', 'enrich_costs_by_row'] -%}
        {%- do parts.append(batch_enrich.prices_fingerprint_part()) -%}
    {%- endif -%}
    {%- if model_name in ['enrich_costs_by_row', 'enrich_history'] -%}
        {%- do parts.append(batch_enrich.live_versions_fingerprint_part()) -%}
    {%- endif -%}
    {%- if model_name in ['int_enrich__input_keys', 'enrich_backlog_rows'] and execute -%}
        {%- do parts.append(batch_enrich.valid_declarations()['valid']) -%}
    {%- endif -%}
    {{- return(batch_enrich.fingerprint(parts)) -}}
{%- endmacro %}


{#-
    The config of an incremental model of the package, replaced by partitions
    (`partition_by`: columns, never null; `indexes`: Postgres indexes besides one on the
    partition columns), its build recorded in int_enrich__build_log.
-#}
{% macro incremental_config(model_name, partition_by, indexes=[]) -%}
    {%- if not execute -%}
        {#- at parse time, for the refs of the build log and of its fingerprint -#}
        {%- do ref('batch_enrich', 'int_enrich__build_log') -%}
        {%- do batch_enrich.model_fingerprint(model_name) -%}
    {%- endif -%}
    {{ config(
        materialized=batch_enrich.incremental_materialization(),
        incremental_strategy='batch_enrich_replace',
        unique_key=partition_by,
        on_schema_change='ignore',
        meta={'batch_enrich_partition_by': partition_by},
        indexes=batch_enrich.key_indexes([partition_by] + indexes),
        post_hook=[
            "{{ batch_enrich.analyze_relation(this) }}",
            "{{ batch_enrich.record_build(batch_enrich.model_fingerprint('" ~ model_name ~ "')) }}",
        ],
    ) }}
{%- endmacro %}


{#- The stamp of the model's last build with the same fingerprint, or none: see incremental_since. -#}
{% macro model_since(model_name) -%}
    {%- if not execute or not is_incremental() -%}
        {{- return(none) -}}
    {%- endif -%}
    {{- return(batch_enrich.incremental_since(batch_enrich.model_fingerprint(model_name))) -}}
{%- endmacro %}


{#-
    The incremental result of a partition-replaced model: every partition of
    `touched_alias` (distinct partitions) with its rows from `rows_alias`, or a marker row
    (`batch_enrich_replace = 'partition'`) when it has none left, in the columns of this
    model's table. Compile time, incremental builds only.
-#}
{% macro replaced_partitions(touched_alias, rows_alias, partition_by) -%}
    {%- set names = [] -%}
    {%- for column in adapter.get_columns_in_relation(this) -%}
        {%- do names.append(column.name) -%}
    {%- endfor -%}
    select
        {%- for name in names %}
        {% if name | lower in partition_by %}{{ touched_alias }}{% else %}{{ rows_alias }}{% endif %}.{{ batch_enrich.column_ref(name) }},
        {%- endfor %}
        case when {{ batch_enrich.column_ref(partition_by[0], rows_alias) }} is null then 'partition' end
            as batch_enrich_replace
    from {{ touched_alias }}
    left join {{ rows_alias }}
        on
            {%- for column in partition_by %}
            {% if not loop.first %}and {% endif %}{{ batch_enrich.column_ref(column, touched_alias) }} = {{ batch_enrich.column_ref(column, rows_alias) }}
            {%- endfor %}
{%- endmacro %}


{#-
    The input keys (enrichment, member_custom_id, primary_key) served by a request whose
    outcome changed since `since` (int_enrich__request_outcomes.changed_at): its own key and,
    with dedupe, the keys that share its result. The calling model refs both models.
-#}
{% macro changed_keys_sql(since) -%}
    select distinct
        changed_request_keys.enrichment,
        changed_request_keys.member_custom_id,
        changed_request_keys.primary_key
    from {{ ref('batch_enrich', 'stg_enrich_ledger__request_keys') }} as changed_request_keys
    inner join {{ ref('batch_enrich', 'int_enrich__request_outcomes') }} as changed_outcomes
        on
            changed_request_keys.submission_id = changed_outcomes.submission_id
            and changed_request_keys.custom_id = changed_outcomes.custom_id
    where changed_outcomes.changed_at > {{ since }}
{%- endmacro %}


{#-
    `; analyze <relation>` on Postgres (a statement to run after a delete that an
    incremental build's query then reads the table through: without fresh statistics
    the planner takes the rows left for the rows there were, and may pick nested loops
    over the rows to rewrite); nothing elsewhere (macros/analyze.sql).
-#}
{% macro analyzed_after(relation) -%}
    {%- set statement = batch_enrich.analyze_relation(relation) -%}
    {{- return(';\n' ~ statement if statement else '') -}}
{%- endmacro %}
