"""Incidents: calls in the built-in register, their texts, the outbox and help desk sync."""
