"""Looking up what a check returned, and checking it survives the wire schema."""

from __future__ import annotations

import msgspec

from checks.schema import Measurement, encode


def names(measurements: list[Measurement]) -> set[str]:
    return {m.name for m in measurements}


def find(measurements: list[Measurement], name: str, **labels: str) -> Measurement:
    """The one measurement called `name` with these labels (fails on none or several)."""
    hits = [
        m
        for m in measurements
        if m.name == name and all(m.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(hits) == 1, f"expected one {name}{labels}, got {hits}"
    return hits[0]


def value(measurements: list[Measurement], name: str) -> float:
    """The value of the one measurement called `name`, whatever its labels."""
    hits = [m.value for m in measurements if m.name == name]
    assert len(hits) == 1, f"expected one {name}, got {hits}"
    return hits[0]


def wire_safe(measurements: list[Measurement]) -> list[Measurement]:
    """Round-trip through the wire schema, as the collector validates it, and return them."""
    for m in measurements:
        assert msgspec.json.decode(encode(m), type=Measurement) == m
    return measurements
