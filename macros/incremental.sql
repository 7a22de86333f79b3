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
