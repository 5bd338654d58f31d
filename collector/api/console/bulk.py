"""The console's bulk actions: the calls ticked in the calls list acknowledged, commented on,
resolved or silenced together, each done and audited on its own (collector/incidents/bulk.py).

The form is the calls list's: a checkbox per call (`call`), and "all on this page" (`all` =
`page`, with the page's calls in `page`), so that it works without script too. The answer is a
page saying, call by call, what was done and what was refused; a silence over the fleet share
comes back with the selection kept and a box to tick that confirms it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar import Request, Response, post

from checks.settings import Duration
from collector.api.call_actions import bulk_outcomes
from collector.api.console.pages import Console, safe_next
from collector.errors import Rejection
from collector.incidents.bulk import BULK_ACTIONS, BulkRequest


def bulk_routes(console: Console) -> list[Any]:
    """POST /calls/bulk."""
    service = console.service

    @post("/calls/bulk", include_in_schema=False, status_code=200)
    async def bulk(request: Request[Any, Any, Any]) -> Response[Any]:
        session, form, refusal = await console.changing(request)
        if refusal is not None:
            return refusal
        assert session is not None
        fields = await request.form()
        chosen = [str(v) for v in fields.getall("call", [])]
        if form.get("all") == "page":
            chosen = form.get("page", "").split() + chosen
        action = form.get("action", "")
        back = _back(request, form)
        context: dict[str, Any] = {
            "action": action,
            "back": back,
            "form": form,
            "outcomes": [],
            "summaries": {},
            "error": None,
            "confirm": None,
            "chosen": [],
        }
        try:
            ids = tuple(dict.fromkeys(_call_id(v) for v in chosen))
            context["chosen"] = list(ids)
            if action not in BULK_ACTIONS:
                raise Rejection(422, "invalid", "Choose what to do with the selected calls.")
            duration = 0.0
            if action == "silence":
                try:
                    duration = float(Duration.parse(form.get("duration", "").strip()))
                except ValueError as exc:
                    raise Rejection(422, "invalid", f"For how long? {exc}", "duration") from None
            outcomes = await bulk_outcomes(
                service,
                BulkRequest(
                    action=action,  # checked above
                    call_ids=ids,
                    text=form.get("text", ""),
                    duration=duration,
                    reason=form.get("reason", ""),
                    confirmed=form.get("confirm_fleet_share") == "yes",
                ),
                session.name,
                "console",
            )
        except Rejection as rejection:
            if rejection.reason == "confirm":
                context["confirm"] = rejection.message
            else:
                context["error"] = rejection.message
            return console.page("calls_bulk.html", session, status=rejection.status, **context)
        summaries = {}
        for outcome in outcomes:
            call = service.store.get_call(outcome.call_id)
            summaries[outcome.call_id] = call.summary if call else ""
        context.update(outcomes=outcomes, summaries=summaries)
        return console.page("calls_bulk.html", session, **context)

    return [bulk]


def _back(request: Request[Any, Any, Any], form: dict[str, str]) -> str:
    """Where "Back to the calls" goes: the list as it was (its filters, its page), told by the
    form or by the Referer of this site's calls list; else the open calls."""
    back = form.get("back", "")
    if not back:
        referer = urlsplit(request.headers.get("referer", ""))
        if referer.netloc == request.headers.get("host", "") and referer.path == "/calls":
            back = f"/calls?{referer.query}" if referer.query else "/calls"
    return safe_next(back) if back.startswith("/calls") else "/calls"


def _call_id(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise Rejection(422, "invalid", f"{value[:20]!r} is no call number.") from None
    if number < 1:
        raise Rejection(422, "invalid", f"{number} is no call number.")
    return number
