"""The web console the collector serves at /: pages (`pages.py`), templates and static files."""

from collector.api.console.pages import COOKIE, Session, SessionCodec, console_routes

__all__ = ["COOKIE", "Session", "SessionCodec", "console_routes"]
