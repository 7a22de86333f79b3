{{ batch_enrich.flagged('review_aspects') }}
