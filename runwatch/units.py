"""How a person reads a value: one formatter for the console, the CLI, ticket texts and reports.

Measurements travel in base units (seconds, bytes, ratios; see checks/schema.py). This module
turns them into what people write: `93.1%`, `23.5 GiB`, `12.3 MiB/s`, `1 h 20 min`,
`3 min ago`. Every place that shows a value to a person goes through here, so a call's ticket,
its console page and `runwatch check` say the same thing the same way.

The unit of a measurement decides; where it has none, the metric name's Prometheus suffix does
(`_ratio`, `_bytes`, `_seconds`, `_timestamp_seconds`, `_per_second`). Numbers keep three
significant digits, percentages one decimal, durations their two largest units.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, Literal

Kind = Literal["ratio", "bytes", "seconds", "timestamp", "bytes_rate", "rate", "count", ""]

_BINARY: Final = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
_SI: Final = ("", "k", "M", "G", "T", "P", "E")
# Two largest units of a duration, each with its symbol; a year is 365 days.
_SPANS: Final = (
    ("y", 365 * 86400),
    ("d", 86400),
    ("h", 3600),
    ("min", 60),
    ("s", 1),
)
_SUFFIXES: Final[tuple[tuple[str, Kind], ...]] = (
    ("_timestamp_seconds", "timestamp"),
    ("_bytes_per_second", "bytes_rate"),
    ("_per_second", "rate"),
    ("_ratio", "ratio"),
    ("_bytes_total", "bytes"),
    ("_bytes", "bytes"),
    ("_seconds_total", "seconds"),
    ("_seconds", "seconds"),
    ("_total", "count"),
)
_UNITS: Final[dict[str, Kind]] = {
    "ratio": "ratio",
    "percent": "ratio",
    "bytes": "bytes",
    "seconds": "seconds",
    "timestamp": "timestamp",
    "bytes_per_second": "bytes_rate",
    "per_second": "rate",
    "count": "count",
}


def kind_of(unit: str, metric: str = "") -> Kind:
    """What a value is, from its unit, else from its metric name's suffix."""
    if unit in _UNITS:
        return _UNITS[unit]
    if unit:
        return ""
    for suffix, kind in _SUFFIXES:
        if metric.endswith(suffix):
            return kind
    return ""


def _special(value: float) -> str | None:
    """NaN and the infinities, which no unit makes readable."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return None


def _digits(value: float) -> str:
    """Up to three significant digits, no exponent, no trailing zeros: 0.123, 1.5, 12.3, 123."""
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, 2 - magnitude)
    text = f"{value:.{decimals}f}"
    if float(text) != 0 and abs(float(text)) >= 10 ** (magnitude + 1):  # 9.995 rounds to 10.0
        decimals = max(0, decimals - 1)
        text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _scaled(value: float, base: int, prefixes: tuple[str, ...]) -> tuple[str, str]:
    """The value in the largest prefix that keeps it at or above 1, and that prefix."""
    size = float(value)
    for index, prefix in enumerate(prefixes):
        shown = _digits(size)
        last = index == len(prefixes) - 1
        if last or abs(float(shown)) < base:
            return shown, prefix
        size /= base
    raise AssertionError("unreachable")  # pragma: no cover


def size(value: float) -> str:
    """Bytes with binary prefixes: `512 B`, `1.5 KiB`, `23.5 GiB`."""
    if (special := _special(value)) is not None:
        return f"{special} B"
    if abs(value) < 1024:
        return (
            f"{value:.0f} B" if abs(value) >= 10 or value == int(value) else f"{_digits(value)} B"
        )
    shown, prefix = _scaled(value, 1024, _BINARY)
    return f"{shown} {prefix}"


def number(value: float, unit: str = "") -> str:
    """A plain number, with SI prefixes from ten thousand up: `0.5`, `1234`, `12.3k`, `4.56M`."""
    if (special := _special(value)) is not None:
        text = special
    elif abs(value) < 10_000:
        text = f"{value:.0f}" if value == int(value) else _digits(value)
    else:
        shown, prefix = _scaled(value, 1000, _SI)
        text = f"{shown}{prefix}"
    return f"{text} {unit}" if unit else text


def percent(ratio: float, decimals: int = 1) -> str:
    """A ratio as a percentage with one decimal: 0.851 is `85.1%`; more `decimals` where a
    tenth of a percent matters (availability: `99.957%`)."""
    if (special := _special(ratio)) is not None:
        return f"{special}%"
    return f"{ratio * 100:.{decimals}f}%"


def duration(seconds: float) -> str:
    """A length of time as people write it: `250 ms`, `48 s`, `1 h 20 min`, `2 d 3 h`, `1 y 4 d`.

    Under a minute it keeps up to three significant digits; from a minute on it shows the two
    largest units, rounded to the smaller one.
    """
    if (special := _special(seconds)) is not None:
        return special
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds == 0:
        return "0 s"
    if seconds < 0.9995:
        if seconds < 0.0009995:
            return f"{sign}{_digits(seconds * 1_000_000)} µs"
        return f"{sign}{_digits(seconds * 1000)} ms"
    if seconds < 59.5:
        shown = f"{seconds:.0f}" if seconds >= 9.95 else f"{seconds:.1f}".removesuffix(".0")
        return f"{sign}{shown} s"
    for index, (symbol, span) in enumerate(_SPANS[:-1]):
        smaller_symbol, smaller = _SPANS[index + 1]
        rounded = round(seconds / smaller) * smaller  # rounded once, to the smaller unit
        if rounded < span:
            continue
        count, rest = divmod(rounded, span)
        parts = [f"{count} {symbol}"]
        if rest:
            parts.append(f"{rest // smaller} {smaller_symbol}")
        return sign + " ".join(parts)
    raise AssertionError("unreachable")  # pragma: no cover - a minute on is always a span


def rate(value: float, unit: str = "") -> str:
    """A rate per second: `12.3 MiB/s` for bytes, `4.5/s` or `4.5 req/s` otherwise."""
    if unit in ("bytes", "bytes_per_second"):
        return f"{size(value)}/s"
    return f"{number(value)} {unit}/s" if unit and unit != "per_second" else f"{number(value)}/s"


def timestamp(ts: float) -> str:
    """An absolute time, to the second, in UTC: `2026-12-02 04:30:00 UTC`."""
    if (special := _special(ts)) is not None:
        return special
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(ts: float, now: float) -> str:
    """A time relative to now: `just now`, `3 min ago`, `in 2 h`, `1 d 4 h ago`."""
    if (special := _special(ts)) is not None:
        return special
    delta = now - ts
    if abs(delta) < 1:
        return "just now"
    # Whole seconds within the first minute ("4 s ago", not "4.3 s ago"), whole minutes after.
    text = duration(round(abs(delta)))
    if abs(delta) >= 60:  # seconds matter only within the first minute
        text = duration(round(abs(delta) / 60) * 60)
    return f"{text} ago" if delta > 0 else f"in {text}"


def _bytes_rate(measured: float) -> str:
    return rate(measured, "bytes")


_BY_KIND: Final[dict[str, Callable[[float], str]]] = {
    "ratio": percent,
    "bytes": size,
    "seconds": duration,
    "timestamp": timestamp,
    "bytes_rate": _bytes_rate,
    "rate": rate,
    "count": number,
}


def value(
    measured: float | None, unit: str = "", metric: str = "", *, now: float | None = None
) -> str:
    """Any measured value as a person reads it, chosen by its unit or metric name.

    A timestamp reads relative to `now` when it is given (`3 min ago`), else as UTC time.
    """
    if measured is None:
        return "no value"
    kind = kind_of(unit, metric)
    if kind == "timestamp" and now is not None:
        return ago(measured, now)
    if kind:
        return _BY_KIND[kind](measured)
    return number(measured, unit)
