"""batch-enrich: database-native LLM enrichment over the Message Batches API."""

__version__ = "0.1.0"
