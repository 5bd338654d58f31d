"""How values and times read on a console page: the Jinja filters, all through runwatch/units.py.

A time reads relative to the page's `now` ("3 min ago", "in 2 h") inside a `<time>` element
whose `datetime` is the absolute instant and whose `title` shows it in UTC on hover. A value
reads in its unit ("85.1%", "23.5 GiB", "1 h 20 min"); a timestamp value reads as a time.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import jinja2
from markupsafe import Markup, escape

from runwatch import units


def time_element(ts: float | None, now: float, text: str | None = None) -> Markup:
    """`<time datetime="ISO" title="absolute UTC">3 min ago</time>`, or `-` without a time."""
    if ts is None or not math.isfinite(ts):
        return Markup("-")
    iso = datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    shown = units.ago(ts, now) if text is None else text
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        iso, units.timestamp(ts), shown
    )


def _now(context: Mapping[str, Any]) -> float:
    """The page's `now` (the collector's clock, as every page is rendered with), else the time."""
    now = context.get("now")
    return float(now) if isinstance(now, int | float) else time.time()


@jinja2.pass_context
def when(context: Mapping[str, Any], ts: float | None) -> Markup:
    """A time relative to the page's `now`, absolute on hover."""
    return time_element(ts, _now(context))


@jinja2.pass_context
def value(
    context: Mapping[str, Any], measured: float | None, unit: str = "", metric: str = ""
) -> Markup:
    """A measured value in its unit; a timestamp reads as a time (relative, absolute on hover)."""
    if measured is not None and units.kind_of(unit, metric) == "timestamp":
        return time_element(measured, _now(context))
    return escape(units.value(measured, unit, metric))


@jinja2.pass_context
def since(context: Mapping[str, Any], row: Mapping[str, Any]) -> Markup:
    """When a rule state last changed, or that it has held since its host's first report."""
    at = row.get("since")
    if row.get("since_first_report"):
        return time_element(at, _now(context), "since the first report")
    if not at:
        return Markup("since the first report")
    return time_element(at, _now(context))


def at(ts: float | None) -> Markup:
    """An absolute time in UTC, for pages that are cached or read later (the status page)."""
    if ts is None or not math.isfinite(ts):
        return Markup("-")
    iso = datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return Markup('<time datetime="{}">{}</time>').format(iso, units.timestamp(ts))


def duration(seconds: float | None) -> str:
    """A length of time: `48 s`, `1 h 20 min`."""
    return "-" if seconds is None else units.duration(seconds)


def ago(seconds: float) -> str:
    """A number of seconds past, as `3 min ago` (prefer `when` on the time itself)."""
    return units.ago(0.0, max(0.0, seconds))


def day_bars(days: list[Mapping[str, Any]]) -> Markup:
    """The status page's bar per day (its worst state), as one piece of markup: the same for
    a service until its today changes or a day passes, so it is made once and kept (the bars
    are most of the page: 90 a service, and a page of 50 services rendered in 20-30 ms when
    the template drew each one)."""
    return _day_bars(tuple((d["date"], d["state"]) for d in days))


@functools.lru_cache(maxsize=4096)
def _day_bars(days: tuple[tuple[str, str | None], ...]) -> Markup:
    bar = Markup('<span class="day service-{}" title="{}: {}"></span>')
    return Markup("").join(
        bar.format(state or "unknown", date, state or "not watched") for date, state in days
    )


FILTERS: dict[str, Callable[..., Any]] = {
    "day_bars": day_bars,
    "when": when,
    "at": at,
    "value": value,
    "since": since,
    "duration": duration,
    "ago": ago,
}
