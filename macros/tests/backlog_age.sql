{#-
    Generic test `batch_enrich.backlog_age` (docs/output-models.md, "Alerting on the
    backlog"): warns, or fails, when an enrichment's backlog is older than a number of
    hours. Put it on an age column of enrich_backlog (or of any model with an
    `enrichment` column and an age in hours):

        - name: oldest_flagged_age_hours
          data_tests:
            - batch_enrich.backlog_age:
                arguments:
                  warn_after_hours: 24     # optional
                  error_after_hours: 72    # optional
                  enrichment: ticket_triage  # optional: one enrichment only

    The package's own enrich_backlog carries it on oldest_flagged_age_hours and
    oldest_in_flight_age_hours, with thresholds from vars (a null var turns a level
    off): batch_enrich_backlog_warn_after_hours (24), batch_enrich_backlog_error_after_hours
    (none), batch_enrich_in_flight_warn_after_hours (26: a batch may take 24 hours),
    batch_enrich_in_flight_error_after_hours (none).

    It returns one row per enrichment over a threshold, with `failure_level` 1 (over
    warn_after_hours) or 2 (over error_after_hours). dbt's own fail_calc, warn_if and
    error_if turn that into the test's status: warn when the highest level is 1, error
    when it is 2. A user may still set `severity: warn` to never fail the build.
-#}

{% test backlog_age(model, column_name='oldest_flagged_age_hours', warn_after_hours=none, error_after_hours=none, enrichment=none) %}
    {{ config(fail_calc='coalesce(max(failure_level), 0)', warn_if='>=1', error_if='>=2') }}
    {%- set warn_after = batch_enrich.backlog_threshold(warn_after_hours, column_name, 'warn') -%}
    {%- set error_after = batch_enrich.backlog_threshold(error_after_hours, column_name, 'error') -%}
    {%- set age = batch_enrich.column_ref(column_name) -%}
    {%- set levels = [] -%}
    {%- if error_after is not none -%}
        {%- do levels.append((2, error_after)) -%}
    {%- endif -%}
    {%- if warn_after is not none -%}
        {%- do levels.append((1, warn_after)) -%}
    {%- endif %}

with

backlog as (

    select * from {{ model }}
    {%- if enrichment is not none %}
    where enrichment = {{ batch_enrich.sql_text_literal(enrichment) }}
    {%- endif %}

),

leveled as (

    select
        enrichment,
        {{ age }} as age_hours,
        {%- if levels %}
        case
            {%- for level, hours in levels %}
            when {{ age }} > {{ hours }} then {{ level }}
            {%- endfor %}
            else 0
        end as failure_level,
        case
            {%- for level, hours in levels %}
            when {{ age }} > {{ hours }} then {{ hours }}
            {%- endfor %}
        end as threshold_hours
        {%- else %}
        0 as failure_level,
        cast(null as double precision) as threshold_hours
        {%- endif %}

    from backlog

),

final as (

    select
        enrichment,
        age_hours,
        threshold_hours,
        failure_level,
        enrichment || ': ' || {{ batch_enrich.sql_text_literal(column_name) }} || ' is '
            || cast(cast(age_hours as numeric(20, 2)) as text) || ' hours, over '
            || cast(threshold_hours as text) || ' hours ('
            || case when failure_level = 2 then 'error' else 'warn' end || ')' as message

    from leveled
    where failure_level > 0

)

select * from final
{% endtest %}


{#-
    A threshold in hours: the test's argument, else the var for the column and level
    (batch_enrich_backlog_* for flagged ages, batch_enrich_in_flight_* for in-flight
    ages); none when neither is set; a number >= 0 or a compile error.
-#}
{% macro backlog_threshold(value, column_name, level) -%}
    {%- if value is none -%}
        {%- set prefix = 'batch_enrich_in_flight_' if 'in_flight' in column_name else 'batch_enrich_backlog_' -%}
        {%- set defaults = {
            'batch_enrich_backlog_warn': 24,
            'batch_enrich_backlog_error': none,
            'batch_enrich_in_flight_warn': 26,
            'batch_enrich_in_flight_error': none,
        } -%}
        {%- set value = var(prefix ~ level ~ '_after_hours', defaults[prefix ~ level]) -%}
    {%- endif -%}
    {%- if value is none -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set number = value | float(-1) if value is not boolean else -1 -%}
    {%- if number < 0 or not (number - number == 0) -%}
        {%- do exceptions.raise_compiler_error(
            "batch_enrich.backlog_age: " ~ level ~ "_after_hours for " ~ column_name ~ " must be a number >= 0, got: " ~ value
        ) -%}
    {%- endif -%}
    {{- return(number) -}}
{%- endmacro %}
