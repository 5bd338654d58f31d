"""What a history graph shows, and its drawing as inline SVG (collector/view/svg.py).

A graph is one series over a window of time: each step's mean as a line and its lowest and
highest values as a band, the rule's warning and critical thresholds as dashed lines, and
moments (a call opened, acknowledged, resolved) as vertical marks. Axes read in human units
(runwatch/units.py) and UTC times. Steps further apart than two resolutions break the line:
a gap is shown as a gap. More steps than the drawing is wide are merged per pixel column.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter

from collector.store.records import HistoryStep
from collector.view.svg import Svg
from runwatch import units

WIDTH, HEIGHT = 440, 150
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 10, 10, 20
# Time between axis labels, the first that leaves at most 6 of them.
_AT = attrgetter("at")
_TIME_STEPS = (300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800)


@dataclass(frozen=True, slots=True)
class Threshold:
    severity: str  # "warning" or "critical"
    value: float
    rule: str


@dataclass(frozen=True, slots=True)
class Mark:
    kind: str  # "opened", "acknowledged", "resolved", "reopened"
    at: float


@dataclass(frozen=True, slots=True)
class Graph:
    """One series over [start, end]."""

    host: str
    metric: str
    labels: dict[str, str]
    unit: str
    start: float
    end: float
    resolution: float
    steps: tuple[HistoryStep, ...]
    thresholds: tuple[Threshold, ...] = ()
    marks: tuple[Mark, ...] = ()
    graph_id: str = ""

    @property
    def title(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return f"{self.metric} {{{where}}}" if where else self.metric

    def human(self, value: float) -> str:
        return units.value(value, self.unit, self.metric)

    def describe(self) -> str:
        """The graph in words, for people who do not see it (its aria-label)."""
        span = units.duration(self.end - self.start)
        parts = [f"{self.title} on {self.host} over {span}"]
        finite = [s for s in self.steps if math.isfinite(s.value)]
        if finite:
            last = finite[-1]
            parts.append(f"latest {self.human(last.value)} at {_clock(last.at)} UTC")
            parts.append(f"highest {self.human(max(s.high or s.value for s in finite))}")
        else:
            parts.append("no values kept in this time")
        parts += [f"{t.severity} at {self.human(t.value)}" for t in self.thresholds]
        parts += [f"{m.kind} at {_clock(m.at)} UTC" for m in self.marks]
        return "; ".join(parts)


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M")


def _merged(steps: Sequence[HistoryStep], start: float, per_pixel: float) -> list[HistoryStep]:
    """Steps merged per pixel column where there are more steps than columns."""
    if not steps:
        return []
    out: list[HistoryStep] = []
    bucket: list[HistoryStep] = []
    column = None
    for step in steps:
        here = int((step.at - start) // per_pixel)
        if column is not None and here != column:
            out.append(_merge(bucket))
            bucket = []
        column = here
        bucket.append(step)
    out.append(_merge(bucket))
    return out


def _merge(bucket: list[HistoryStep]) -> HistoryStep:
    if len(bucket) == 1:
        return bucket[0]
    first = bucket[0]
    return HistoryStep(
        first.host,
        first.series,
        first.at,
        sum(s.value for s in bucket) / len(bucket),
        min(s.value if s.low is None else s.low for s in bucket),
        max(s.value if s.high is None else s.high for s in bucket),
    )


def _value_range(
    steps: Sequence[HistoryStep], thresholds: Sequence[Threshold], binary: bool
) -> tuple[float, float, float]:
    """The values the plot spans, and the step between its axis labels: round numbers
    (1, 2, 2.5 or 5 times a power of ten; of 1024 for bytes) that take in every value and
    threshold, from zero where the values are all positive."""
    values = [s.value for s in steps]
    values += [s.low for s in steps if s.low is not None]
    values += [s.high for s in steps if s.high is not None]
    values += [t.value for t in thresholds]
    if not values:
        return 0.0, 1.0, 0.25
    low, high = min(values), max(values)
    if low >= 0 and (high == 0 or low / high < 0.5 or high <= 1):
        low = 0.0  # counts, bytes and ratios read best from zero
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        low, high = (low - pad if low < 0 else low), high + pad
    every = _nice((high - low) / 4, binary)
    return math.floor(low / every) * every, math.ceil(high / every) * every, every


def _nice(raw: float, binary: bool) -> float:
    scale = 1.0
    if binary:
        while raw >= 1024 * scale:
            scale *= 1024
    power = 10.0 ** math.floor(math.log10(raw / scale))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * power * scale >= raw:
            return factor * power * scale
    return 10 * power * scale


def _time_step(span: float) -> int:
    return next((s for s in _TIME_STEPS if span / s <= 6), _TIME_STEPS[-1])


@dataclass(frozen=True, slots=True)
class _Frame:
    """Where the plot lies in the drawing, and what it spans: time across, values up."""

    graph: Graph
    x0: float
    x1: float
    y0: float  # the bottom
    y1: float  # the top
    low: float
    high: float

    def x(self, at: float) -> float:
        span = max(self.graph.end - self.graph.start, 1.0)
        return self.x0 + (at - self.graph.start) / span * (self.x1 - self.x0)

    def y(self, value: float) -> float:
        return self.y0 - (value - self.low) / (self.high - self.low) * (self.y0 - self.y1)


def draw(graph: Graph, width: int = WIDTH, height: int = HEIGHT) -> str:
    """The graph as inline SVG, styled by the console's classes."""
    svg = Svg(
        width,
        height,
        label=graph.describe(),
        sized=False,
        class_="graph",
        id=graph.graph_id or None,
        data_metric=graph.metric,
    )
    columns = width - _RIGHT - _LEFT
    steps = [
        s
        for s in graph.steps
        if math.isfinite(s.value) and graph.start - graph.resolution < s.at <= graph.end
    ]
    steps.sort(key=_AT)
    per_column = max(graph.end - graph.start, 1.0) / columns
    if len(steps) > columns:
        steps = _merged(steps, graph.start, per_column)
    binary = units.kind_of(graph.unit, graph.metric) in ("bytes", "bytes_rate")
    low, high, every = _value_range(steps, graph.thresholds, binary)
    frame = _Frame(graph, _LEFT, width - _RIGHT, height - _BOTTOM, _TOP, low, high)
    _axes(svg, frame, height, every)
    if steps:
        # Further apart than two steps (or two merged columns): a gap, drawn as one.
        _series(svg, frame, steps, 2 * max(graph.resolution, per_column))
    else:
        svg.text(
            (frame.x0 + frame.x1) / 2,
            (frame.y0 + frame.y1) / 2,
            "no history in this time yet",
            class_="graph-empty",
            text_anchor="middle",
        )
    _thresholds(svg, frame)
    _marks(svg, frame)
    return svg.markup()


def _axes(svg: Svg, frame: _Frame, height: int, every_value: float) -> None:
    graph = frame.graph
    svg.rect(frame.x0, frame.y1, frame.x1 - frame.x0, frame.y0 - frame.y1, class_="plot")
    ticks = round((frame.high - frame.low) / every_value)
    for tick in range(ticks + 1):  # values, bottom to top
        value = frame.low + every_value * tick
        level = frame.y(value)
        svg.line(frame.x0, level, frame.x1, level, class_="grid")
        svg.text(
            frame.x0 - 4, level + 3, graph.human(value), class_="axis-label", text_anchor="end"
        )
    every = _time_step(graph.end - graph.start)
    first = math.ceil(graph.start / every) * every
    for at in range(int(first), int(graph.end) + 1, every):
        svg.line(frame.x(at), frame.y0, frame.x(at), frame.y0 + 3, class_="tick")
        label = _clock(at)[5:10] if every >= 86400 else _clock(at)[11:]
        svg.text(frame.x(at), height - 5, label, class_="axis-label", text_anchor="middle")


def _series(svg: Svg, frame: _Frame, steps: list[HistoryStep], gap: float) -> None:
    graph = frame.graph
    # frame.x and frame.y, unrolled: a host page draws some 6,000 points.
    start, end, half = graph.start, graph.end, graph.resolution / 2
    x0, xk = frame.x0, (frame.x1 - frame.x0) / max(end - start, 1.0)
    y0, low, yk = frame.y0, frame.low, (frame.y0 - frame.y1) / (frame.high - frame.low)
    for run in _runs(steps, gap):
        # A step covers [at, at + resolution): drawn at its middle, kept inside the window.
        xs = [x0 + (min(max(s.at + half, start), end) - start) * xk for s in run]
        ys = [y0 - (s.value - low) * yk for s in run]
        if any(s.low is not None for s in run):
            top = [
                y if s.high is None else y0 - (s.high - low) * yk
                for s, y in zip(run, ys, strict=True)
            ]
            bottom = [
                y if s.low is None else y0 - (s.low - low) * yk
                for s, y in zip(run, ys, strict=True)
            ]
            if len(run) == 1:
                svg.rect(xs[0] - 2, top[0], 4, bottom[0] - top[0], class_="band")
            else:
                outline = list(zip(xs + xs[::-1], top + bottom[::-1], strict=True))
                svg.polygon(outline, class_="band")
        if len(run) == 1:
            svg.circle(xs[0], ys[0], 2.5, class_="dot")
        else:
            svg.polyline(list(zip(xs, ys, strict=True)), class_="line")


def _thresholds(svg: Svg, frame: _Frame) -> None:
    graph = frame.graph
    for threshold in graph.thresholds:
        level = frame.y(threshold.value)
        text = f"{threshold.severity} {graph.human(threshold.value)}"
        svg.add(
            "line",
            f"{threshold.rule}: {text}",
            x1=frame.x0,
            y1=level,
            x2=frame.x1,
            y2=level,
            class_=f"threshold threshold-{threshold.severity}",
            data_threshold=threshold.severity,
        )
        svg.text(
            frame.x0 + 3,
            level - 2,
            text,
            class_=f"threshold-label threshold-{threshold.severity}",
        )


def _marks(svg: Svg, frame: _Frame) -> None:
    graph = frame.graph
    for mark in graph.marks:
        if not graph.start <= mark.at <= graph.end:
            continue
        at = frame.x(mark.at)
        svg.add(
            "line",
            f"{mark.kind} {_clock(mark.at)} UTC",
            x1=at,
            y1=frame.y1,
            x2=at,
            y2=frame.y0,
            class_=f"mark mark-{mark.kind}",
            data_mark=mark.kind,
        )
        # Its name beside it, on the side with room (a call opened now is at the right edge).
        right = at > (frame.x0 + frame.x1) / 2
        svg.text(
            at - 3 if right else at + 3,
            frame.y1 + 10 + 11 * graph.marks.index(mark),
            mark.kind,
            class_=f"mark-label mark-{mark.kind}",
            text_anchor="end" if right else None,
        )


def _runs(steps: list[HistoryStep], gap: float) -> list[list[HistoryStep]]:
    """Steps in unbroken runs: a step further than `gap` from the one before starts a new run."""
    runs: list[list[HistoryStep]] = []
    for step in steps:
        if runs and step.at - runs[-1][-1].at <= gap:
            runs[-1].append(step)
        else:
            runs.append([step])
    return runs
