"""Wire schema v1: what an agent sends to a collector. Shared by both sides.

One definition serves three purposes: the agent encodes with it, the collector validates every
request against it (with the exact field path on error), and the OpenAPI document is generated
from it.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

SCHEMA_VERSION: Final = 1

# Prometheus naming rules, so every measurement can be exposed on /metrics as it is. `(?!\n)$`:
# Python's `$` also matches before a trailing newline, which would end a line of /metrics
# early (`\Z` would say the same, but JSON Schema, for the OpenAPI document, lacks it). Label
# names starting with `__` are Prometheus' own (`__name__`).
METRIC_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*(?!\n)$"
LABEL_NAME_PATTERN = r"^(?!__)[a-zA-Z_][a-zA-Z0-9_]*(?!\n)$"
HOST_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}(?!\n)$"

MetricName = Annotated[str, msgspec.Meta(pattern=METRIC_NAME_PATTERN, max_length=200)]
LabelName = Annotated[str, msgspec.Meta(pattern=LABEL_NAME_PATTERN, max_length=100)]
LabelValue = Annotated[str, msgspec.Meta(max_length=1024)]
HostName = Annotated[str, msgspec.Meta(pattern=HOST_NAME_PATTERN)]
CheckName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
# Up to the end of year 9999: past it, dates cannot be written in call texts or stores.
MAX_TIMESTAMP: Final = 253_402_300_799.0
Timestamp = Annotated[
    float, msgspec.Meta(ge=0, le=MAX_TIMESTAMP, description="Unix time in seconds")
]

# Labels the collector adds itself; a measurement may not carry them.
RESERVED_LABELS: Final = frozenset({"host", "check"})
# The most a measurement's labels may hold, names and values together, in UTF-8 bytes. The
# labels are part of the series' key, and a database index entry has a size limit (about
# 2,700 bytes in PostgreSQL); host name and metric name take the rest.
MAX_LABELS_BYTES: Final = 2048


def labels_bytes(labels: dict[str, str]) -> int:
    """How many UTF-8 bytes a label set holds, names and values together."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in labels.items())


class Measurement(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One value of one metric, in base units, from one check."""

    check: CheckName
    name: MetricName
    value: float
    unit: Annotated[str, msgspec.Meta(max_length=32)] = ""
    labels: dict[LabelName, LabelValue] = {}
    timestamp: Timestamp

    def __post_init__(self) -> None:
        clash = RESERVED_LABELS.intersection(self.labels)
        if clash:
            raise ValueError(f"label {sorted(clash)[0]!r} is reserved for the collector")
        if self.labels and labels_bytes(self.labels) > MAX_LABELS_BYTES:
            raise ValueError(
                f"the labels of {self.name!r} hold {labels_bytes(self.labels)} "
                f"bytes; the limit is {MAX_LABELS_BYTES}"
            )
        if self.name.endswith("_total"):
            # Measurements are gauges (counters become rates in the check); `_total` would lie.
            raise ValueError(f"measurement name {self.name!r} must not end in '_total'")


class CheckError(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Why a check produced nothing: it raised, or it ran past its timeout."""

    kind: Literal["error", "timeout", "skipped"]
    message: Annotated[str, msgspec.Meta(max_length=4096)]


class CheckRun(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One finished (or abandoned) run of a check. `error` is set when it produced nothing."""

    check: CheckName
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    interval_seconds: Annotated[float, msgspec.Meta(gt=0)]
    started_at: Timestamp
    duration_seconds: Seconds
    error: CheckError | None = None
    # What the check said in words (a plugin's output line): shown in the call's text.
    output: Annotated[str, msgspec.Meta(max_length=4096)] | None = None


class Report(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Everything an agent collected since its previous report.

    Fields at their defaults are left out, so a report without host labels still suits a
    collector that predates them.
    """

    schema_version: Literal[1]
    host: HostName
    agent_version: Annotated[str, msgspec.Meta(max_length=64)]
    boot_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    # Both stores keep seq as a signed 64-bit integer.
    seq: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    sent_at: Timestamp
    interval_seconds: Annotated[float, msgspec.Meta(gt=0)]
    measurements: list[Measurement] = []
    checks: list[CheckRun] = []
    # The host's own labels from the agent config (role, site); host groups select on them.
    labels: dict[LabelName, LabelValue] = {}


_report_decoder = msgspec.json.Decoder(Report)
_encoder = msgspec.json.Encoder()


def encode(value: msgspec.Struct) -> bytes:
    """Encode a wire value as JSON."""
    return _encoder.encode(value)


def decode_report(body: bytes) -> Report:
    """Decode and validate a report. Raises msgspec.ValidationError or msgspec.DecodeError."""
    report = _report_decoder.decode(body)
    # JSON can carry NUL only escaped; PostgreSQL cannot store it in text, and no check
    # needs it. The search walks the report only when the escape is in the body at all.
    if b"\\u0000" in body:
        where = _nul_path(msgspec.to_builtins(report), "$")
        if where is not None:
            raise msgspec.ValidationError(f"text must not contain NUL (\\u0000) - at `{where}`")
    return report


def _nul_path(value: object, path: str) -> str | None:
    """The JSON path of the first string (or key) holding a NUL character, or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return path
            found = _nul_path(item, f"{path}.{key}")
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _nul_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None
