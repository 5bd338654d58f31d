"""Forecasts: when will a series reach a value, at the rate it moved over a recent span?

A least-squares line through the series' downsampled history (like Prometheus'
`predict_linear` or Zabbix's `timeleft`), so one odd sample does not decide alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from runwatch import units


@dataclass(frozen=True, slots=True)
class Forecast:
    """A fitted trend: the value now, its rate, and when it reaches the target (if it does)."""

    value_now: float  # the fitted value at the latest point
    rate_per_second: float
    at: float  # the latest point's time
    seconds_left: float | None  # None: not heading for the target

    @property
    def reaches_at(self) -> float | None:
        return None if self.seconds_left is None else self.at + self.seconds_left

    def describe(self, metric: str, unit: str, target: float, span: float) -> str:
        """The trend in words for a call: rate, and the predicted time."""
        word = "rises" if self.rate_per_second > 0 else "falls"
        hourly = units.value(abs(self.rate_per_second) * 3600, unit, metric)
        daily = units.value(abs(self.rate_per_second) * 86400, unit, metric)
        text = (
            f"{metric} is {units.value(self.value_now, unit, metric)} and {word} by "
            f"{hourly}/h ({daily}/day), fitted over the last "
            f"{units.value(span, 'seconds')}"
        )
        if self.reaches_at is None:
            return text + f"; at that rate it does not reach {units.value(target, unit, metric)}"
        return (
            text + f"; at that rate it reaches {units.value(target, unit, metric)} at "
            f"{units.timestamp(self.reaches_at)}"
        )


def linear_forecast(
    points: Iterable[tuple[float, float]], target: float, *, min_points: int, min_span: float
) -> Forecast | None:
    """Fit (time, value) points; None when there are too few of them, or they span too little."""
    data = list(points)
    if len(data) < min_points:
        return None
    first, last = data[0][0], data[-1][0]
    if last - first < min_span:
        return None
    # Times relative to the latest point keep the sums well-conditioned (Unix times are big).
    xs = [t - last for t, _ in data]
    ys = [v for _, v in data]
    n = len(data)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx
    fitted = mean_y - slope * mean_x  # the line at x = 0, the latest point
    # Which side of the target the span began on: the series heads for the target only when
    # it moves that way. A fit already past the target (a full disk) has reached it.
    start = fitted + slope * xs[0]
    heading = (target - start) * slope > 0
    left = max(0.0, (target - fitted) / slope) if heading else None
    return Forecast(fitted, slope, last, left)
