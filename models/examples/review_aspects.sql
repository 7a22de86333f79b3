{#- Input model of the review_aspects enrichment: one row per (product_id, review_id). -#}
{{ config(enabled=var('batch_enrich_examples', project_name == 'batch_enrich')) }}

with

reviews as (

    select * from {{ ref('example_product_reviews') }}

),

final as (

    select
        product_id,
        review_id,
        product_name,
        rating,
        review_text,
        'Product: ' || product_name || chr(10)
        || 'Rating: ' || cast(rating as text) || ' of 5' || chr(10) || chr(10)
        || review_text as prompt

    from reviews

)

select * from final
