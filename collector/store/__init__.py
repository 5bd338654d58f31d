"""The store: records, focused protocols, and the SQLite and PostgreSQL backends."""
