{{ batch_enrich.enriched('review_aspects') }}
