"""The pages an acknowledge link opens: GET /ack/{token} shows the call and a confirm button,
and only POST /ack/{token} acknowledges it (notify/ack.py makes and reads the links).

No sign-in: the signed link is the credential. The confirm form carries a CSRF token bound to
the link and to a nonce in a SameSite=Strict cookie the GET sets, so a form posted from another
site, or a POST that never saw the page, is refused. A link that was changed, or signed with a
key this collector does not hold, counts as a failed authentication from its address (the
sign-in's limits, collector/api/limits.py). Logs name a link by its id, never by its token.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.params import FromPath

from collector.api.console.pages import Console, form_of, same_origin
from collector.api.limits import peer_address
from collector.incidents.calls import Call
from collector.notify.ack import AckLink, AckLinkRefused, token_hint

log = logging.getLogger(__name__)

NONCE_COOKIE = "runwatch_ack"
_NONCE = re.compile(r"^[A-Za-z0-9_-]{32}$")
# The token is in the URL: no other site may learn it from a Referer. (Not no-referrer: with
# it, browsers send `Origin: null` on the confirm form, which then looks cross-site.)
_HEADERS = {"Referrer-Policy": "same-origin"}


class AckPages:
    """What the two routes share: reading the link, and the pages that answer."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.service = console.service

    def refused(self, status: int, title: str, message: str) -> Response[str]:
        return self.console.page(
            "ack.html", None, status=status, headers=_HEADERS, title=title, message=message
        )

    def read(self, request: Request[Any, Any, Any], token: str) -> AckLink | Response[str]:
        """The link, or the page that says why it cannot be used."""
        service = self.service
        if service.ack_links is None:
            return self.refused(
                404, "Links are switched off", "This collector makes no such links."
            )
        client = peer_address(request.scope)
        service.limits.check_address(client)  # 429 while the address is refused
        try:
            return service.ack_links.keys.read(token, service.clock())
        except AckLinkRefused as refusal:
            if refusal.status == 403:
                service.limits.failed(client, "link")
            log.warning(
                "acknowledge link %s from %s refused: %s",
                token_hint(token),
                client or "an unknown address",
                refusal.reason,
            )
            title = "Link expired" if refusal.reason == "expired" else "Link not valid"
            return self.refused(refusal.status, title, refusal.message)

    def used(self, link: AckLink) -> Response[str]:
        return self.refused(
            410,
            "Link already used",
            f"This link was already used: it works once. Call #{link.call_id} stays acknowledged.",
        )

    def unknown(self, link: AckLink) -> Response[str]:
        return self.refused(404, "No such call", f"This collector has no call #{link.call_id}.")

    def csrf_refusal(
        self, request: Request[Any, Any, Any], link: AckLink, sent: str
    ) -> Response[str] | None:
        """The page refusing a confirm form from another site or without its CSRF token."""
        if request.headers.get("sec-fetch-site") == "cross-site" or not same_origin(request):
            log.warning("acknowledge link %s: refused a form from another site", link.link_id)
            return self.refused(403, "Refused", "The form came from another site.")
        nonce = request.cookies.get(NONCE_COOKIE, "")
        links = self.service.ack_links
        if links is None or not links.keys.csrf_ok(link, nonce, sent):
            log.warning(
                "acknowledge link %s: refused a form without a valid CSRF token", link.link_id
            )
            return self.refused(
                403,
                "Refused",
                "The form was stale or not from this page (CSRF check failed): open the link "
                "again and confirm there.",
            )
        return None

    def show(self, link: AckLink, call: Call, nonce: str = "", done: str = "") -> Response[str]:
        """The call, and the confirm form (with `nonce`), or what became of the call."""
        links = self.service.ack_links
        page = self.console.page(
            "ack.html",
            None,
            headers=_HEADERS,
            title=f"Call #{call.id}",
            call=call,
            link=link,
            acked="" if done else _acknowledgement(self.service, call),
            done=done,
            csrf=links.keys.csrf(link, nonce) if links and nonce else "",
        )
        if nonce:
            page.cookies.append(
                Cookie(
                    NONCE_COOKIE,
                    value=nonce,
                    httponly=True,
                    samesite="strict",
                    secure=self.console.secure,
                    path="/ack",
                    max_age=3600,
                )
            )
        return page


def ack_routes(console: Console) -> list[Any]:
    """GET and POST /ack/{token}."""
    pages = AckPages(console)
    store = console.service.store

    @get("/ack/{token:str}", include_in_schema=False)
    async def ack_page(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[str]:
        """Show the call and a confirm button; change nothing."""
        link = pages.read(request, token)
        if isinstance(link, Response):
            return link
        call = store.get_call(link.call_id)
        if call is None:
            return pages.unknown(link)
        if store.ack_link_used(link.link_id) is not None:
            return pages.used(link)
        nonce = request.cookies.get(NONCE_COOKIE, "")
        return pages.show(link, call, nonce if _NONCE.match(nonce) else secrets.token_urlsafe(24))

    @post("/ack/{token:str}", include_in_schema=False, status_code=200)
    async def ack_confirm(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[str]:
        """Acknowledge the call, once, for the person the link was sent to."""
        link = pages.read(request, token)
        if isinstance(link, Response):
            return link
        form = await form_of(request)
        refusal = pages.csrf_refusal(request, link, form.get("csrf", ""))
        if refusal is not None:
            return refusal
        outcome = console.service.acknowledge_from_link(link.call_id, link.recipient, link.link_id)
        if outcome.call is None:
            return pages.unknown(link)
        if outcome.outcome == "used":
            return pages.used(link)
        done = link.recipient if outcome.outcome == "acknowledged" else ""
        return pages.show(link, outcome.call, done=done)

    return [ack_page, ack_confirm]


def _acknowledgement(service: Any, call: Call) -> str:
    """Who acknowledged the call and how, in the history's words ("" when nobody did)."""
    for event in service.store.call_events(call.id):
        if event.kind == "acknowledged":
            return str(event.text)
    at = service.acknowledged_at(call)
    return "Acknowledged in the help desk." if at is not None else ""
