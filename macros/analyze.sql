{#-
    Planner statistics after every build (docs/running.md, "Postgres: statistics").

    A table dbt has just created has no statistics on Postgres until autovacuum gets to
    it (up to a minute later, or never for a table that is not written again), and the
    planner then guesses a few rows where there are thousands: the flagged views, which
    join int_enrich__request_outcomes to the ledger, become nested loops with a full scan
    per row. So the package analyzes:

      - each table of models/intermediate (a post-hook in dbt_project.yml) right after
        dbt builds it, in the same transaction;
      - the ledger tables the staging views read, at the start of every dbt run
        (on-run-start): the connector may have written thousands of rows a moment ago.

    A no-op on other warehouses (DuckDB keeps its statistics as it writes), and when the
    var `batch_enrich_analyze` is false (bench/bench_flagged_read.py measures without).
-#}

{% macro analyze_relation(relation) -%}
    {%- if not var('batch_enrich_analyze', true) -%}
        {{- return('') -}}
    {%- endif -%}
    {{- return(adapter.dispatch('analyze_relation', 'batch_enrich')(relation)) -}}
{%- endmacro %}

{% macro default__analyze_relation(relation) -%}
    {{- return('') -}}
{%- endmacro %}

{% macro postgres__analyze_relation(relation) -%}
    {{- return('analyze ' ~ relation) -}}
{%- endmacro %}


{#- The ledger tables the flagged views read (through the staging views), analyzed. -#}
{% macro analyze_ledger() -%}
    {%- if not var('batch_enrich_analyze', true) -%}
        {{- return('') -}}
    {%- endif -%}
    {{- return(adapter.dispatch('analyze_ledger', 'batch_enrich')()) -}}
{%- endmacro %}

{% macro default__analyze_ledger() -%}
    {{- return('') -}}
{%- endmacro %}

{% macro postgres__analyze_ledger() -%}
    {%- if execute -%}
        {%- for table in ['batches', 'requests', 'shared_keys', 'results_raw'] -%}
            {%- call statement('batch_enrich_analyze_ledger', auto_begin=True) -%}
                analyze {{ batch_enrich.ledger_relation(table) }}
            {%- endcall -%}
        {%- endfor -%}
        {%- do adapter.commit() -%}
    {%- endif -%}
    {{- return('') -}}
{%- endmacro %}
