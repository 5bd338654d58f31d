"""Ingest: admit a report, store it, and hand what changed to evaluation."""
