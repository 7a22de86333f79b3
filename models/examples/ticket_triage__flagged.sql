{{ batch_enrich.flagged('ticket_triage') }}
