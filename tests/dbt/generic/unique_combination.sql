{#-
    Fails for every combination of `columns` that occurs more than once (the grain test).
    Column names are quoted (batch_enrich.column_ref): `user` or `order` is a column.
-#}
{% test unique_combination(model, columns) %}

with grouped as (

    select
        {% for column in columns %}{{ batch_enrich.column_ref(column) }}{% if not loop.last %}, {% endif %}{% endfor %},
        count(*) as occurrences
    from {{ model }}
    group by {% for column in columns %}{{ batch_enrich.column_ref(column) }}{% if not loop.last %}, {% endif %}{% endfor %}

),

final as (

    select * from grouped
    where occurrences > 1

)

select * from final

{% endtest %}
