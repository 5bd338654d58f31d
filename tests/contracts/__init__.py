"""Facts recorded from vendors' published API documents, for contract tests (not copies)."""
