{{ batch_enrich.enriched('ticket_triage') }}
