"""Raw tables: declared schemas, contracts, PII masking, loading and the synthetic generator."""
