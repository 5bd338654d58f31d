"""GET (and HEAD) of /status, /status.json and /status.atom answered from the cached render ahead of
Litestar: the page is public, so a thousand visitors a second must not cost the event loop
(that ingests reports) more than the HTTP parser does.

A request the fast path is not sure of (a method other than GET and HEAD, a NUL in the URL,
a Host this collector does not answer to, the app not built yet) goes to Litestar, which
answers it as every other route: the same bytes and headers, or the refusal with its reason.
"""

from __future__ import annotations

from typing import Any

from collector.access import HostPolicy
from collector.app import CollectorService

Scope = dict[str, Any]
PATHS = {"/status": "html", "/status.json": "json", "/status.atom": "atom"}


class StatusFastPath:
    """An ASGI app wrapping the collector's: the status page's GETs, then everything else."""

    def __init__(self, app: Any, service: CollectorService) -> None:
        self.app = app
        self.service = service
        self.policy = HostPolicy.from_config(service.config)
        self.served = 0  # requests answered here, for tests and tools

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        answers = self.service.status_answers
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and answers is not None
            and (fmt := PATHS.get(scope["path"])) is not None
            and self._plain(scope)
        ):
            if_none_match = accept_encoding = None
            for name, value in scope["headers"]:
                if name == b"host" and not self.policy.allows(value.decode("latin-1")):
                    break  # Litestar refuses it (421) or lets a token through
                if name == b"if-none-match":
                    if_none_match = value
                elif name == b"accept-encoding":
                    accept_encoding = value
            else:
                status, headers, body = await answers.raw(fmt, if_none_match, accept_encoding)
                self.served += 1
                await send({"type": "http.response.start", "status": status, "headers": headers})
                head = scope["method"] == "HEAD"  # the same headers, no body
                await send({"type": "http.response.body", "body": b"" if head else body})
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _plain(scope: Scope) -> bool:
        """No NUL in the path or query (Litestar answers those 400)."""
        raw = scope.get("raw_path") or b""
        query = scope.get("query_string") or b""
        return not any(b"\x00" in part or b"%00" in part for part in (raw, query))
