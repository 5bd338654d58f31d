"""The old import path of the collector's wiring, kept for callers not yet moved to
`collector.app` (runwatch/up.py); remove once none imports it."""

from collector.app import CollectorService

__all__ = ["CollectorService"]
