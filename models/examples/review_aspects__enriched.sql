{{ config(enabled=var('batch_enrich_examples', project_name == 'batch_enrich')) }}
{{ batch_enrich.enriched('review_aspects') }}
