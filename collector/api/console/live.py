"""Live pages: the overview, the calls list and a host's page refresh themselves.

static/console.js asks for the page it shows again every few seconds, with the header
`X-Runwatch-Live: 1`. The route answers with the page's main part only (the template's `main`
block: no header, no navigation), and the script swaps each `[data-live]` region of it into the
page, leaving alone a region that holds the focused element, a selection or a form someone has
typed in, and keeping ticked checkboxes. A live request without a live session is answered 401
(not a redirect to the sign-in page), so the script can say the session ended.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import MediaType, Request, Response

from collector.api.console.pages import SECURITY_HEADERS, Console
from collector.api.console.session import Session

LIVE_HEADER = "x-runwatch-live"
REFRESH_SECONDS = 5


def is_live(request: Request[Any, Any, Any]) -> bool:
    """Whether the request is a live page's refresh."""
    return request.headers.get(LIVE_HEADER) == "1"


def signed_out(request: Request[Any, Any, Any], console: Console) -> Response[Any]:
    """What a request without a session gets: 401 for a refresh, else the sign-in page."""
    if is_live(request):
        return Response(
            "Your session has ended: sign in again.",
            status_code=401,
            media_type=MediaType.TEXT,
            headers=SECURITY_HEADERS,
        )
    return console.to_login(request)


def live_page(
    console: Console,
    request: Request[Any, Any, Any],
    template: str,
    session: Session,
    **context: Any,
) -> Response[str]:
    """The page, or for a refresh only its main block, rendered with the same context."""
    context.setdefault("refresh_seconds", REFRESH_SECONDS)
    at = datetime.fromtimestamp(console.service.clock(), UTC)
    context.setdefault("updated", {"iso": at.isoformat(), "clock": at.strftime("%H:%M:%S")})
    if not is_live(request):
        return console.page(template, session, **context)
    body = console.render(template, session, block="main", **context)
    return Response(
        body,
        media_type=MediaType.HTML,
        headers={**SECURITY_HEADERS, "Vary": "X-Runwatch-Live"},
    )
