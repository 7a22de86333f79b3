{#- Fails for every combination of `columns` that occurs more than once (the grain test). -#}
{% test unique_combination(model, columns) %}

with grouped as (

    select
        {% for column in columns %}{{ column }}{% if not loop.last %}, {% endif %}{% endfor %},
        count(*) as occurrences
    from {{ model }}
    group by {% for column in columns %}{{ column }}{% if not loop.last %}, {% endif %}{% endfor %}

),

final as (

    select * from grouped
    where occurrences > 1

)

select * from final

{% endtest %}
