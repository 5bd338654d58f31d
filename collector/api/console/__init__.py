"""The web console the collector serves at /: templates, static files and the route modules.

`session.py` is the signed session cookie; `pages.py` what every page shares (the session of a
request, the checks of a form that changes something, rendering); the routes are in
`signin.py`, `overview.py`, `calls.py`, `bulk.py`, `silences.py`, `report.py` and
`services.py`. Pages that need no sign-in: the status page for users, `status.py`, and the
pages acknowledge links in notifications open, `ack.py`.
"""

from typing import Any

from collector.api.console.ack import ack_routes
from collector.api.console.bulk import bulk_routes
from collector.api.console.calls import call_routes
from collector.api.console.overview import overview_routes
from collector.api.console.pages import Console
from collector.api.console.report import report_routes
from collector.api.console.services import service_page_routes
from collector.api.console.session import COOKIE, Session, SessionCodec
from collector.api.console.signin import signin_routes
from collector.api.console.silences import silence_page_routes
from collector.api.console.status import status_page_routes
from collector.app import CollectorService

__all__ = ["COOKIE", "Session", "SessionCodec", "console_routes"]


def console_routes(service: CollectorService) -> list[Any]:
    """The console's pages and forms, served at / by the collector."""
    console = Console(service)
    return [
        *signin_routes(console),
        *overview_routes(console),
        *bulk_routes(console),
        *call_routes(console),
        *silence_page_routes(console),
        *report_routes(console),
        *service_page_routes(console),
        *status_page_routes(console),
        *ack_routes(console),
    ]
