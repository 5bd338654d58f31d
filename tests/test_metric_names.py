"""/metrics stays parseable, and the collector's own families its own, whatever agents name
their measurements and labels."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checks.schema import SCHEMA_VERSION, Report, decode_report
from collector.app import CollectorService
from collector.metrics.exposition import FAMILY_SUFFIXES
from tests.helpers import FakeClock, collector_config, tool
from tests.helpers.cases import cases
from tests.procs import promtool_check

MakeService = Callable[..., CollectorService]


def body(host: str, seq: int, now: float, measurements: list[dict[str, object]]) -> bytes:
    return json.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "host": host,
            "agent_version": "test",
            "boot_id": "boot-1",
            "seq": seq,
            "sent_at": now,
            "interval_seconds": 60,
            "measurements": measurements,
        }
    ).encode()


def measurement(
    name: str, now: float, labels: dict[str, str] | None = None, value: float = 1.0
) -> dict[str, object]:
    return {"check": "fake", "name": name, "value": value, "timestamp": now, "labels": labels or {}}


def families(text: str) -> list[str]:
    return re.findall(r"^# HELP (\S+) ", text, re.MULTILINE)


def own_families(service: CollectorService) -> list[str]:
    """Every family the collector itself exposes, read from its real /metrics."""
    text = service.metrics.render().decode()
    return [name for name in families(text) if name.startswith("runwatch_")]


COLLECTOR_FAMILY_NAMES = {
    "a histogram's buckets": "ingest_duration_seconds_bucket",
    "a histogram's count": "ingest_duration_seconds_count",
    "a histogram's own name": "ingest_duration_seconds",
    "a counter's _created": "reports_ingested_created",
    "a counter without _total": "reports_ingested",
    "an info gauge": "build_info",
    "an info gauge's stem": "build",
    "a fleet counter's stem": "calls_opened",
    "a fleet gauge": "host_state",
    "the process collector": "process_cpu_seconds",
    "a counter added with the series limits": "series_refused",
}


@pytest.mark.parametrize("name", cases(COLLECTOR_FAMILY_NAMES))
def test_a_measurement_named_like_a_collector_family_is_not_exposed_and_the_agent_is_told(
    make_service: MakeService, clock: FakeClock, name: str
) -> None:
    service = make_service([])
    service.ingest("web01", named_report(clock, [name, "fine_ratio"]))
    text = service.metrics.render().decode()
    promtool_check(text)
    assert len(families(text)) == len(set(families(text))), "one HELP line per family"
    assert 'runwatch_fine_ratio{host="web01"' in text
    assert not re.search(rf'^runwatch_{name}\{{host="web01",check="fake"', text, re.MULTILINE)
    result = service.ingest("web01", named_report(clock, [name], seq=2))
    (warning,) = result.warnings
    assert warning.code == "reserved_name" and f"runwatch_{name}" in warning.message


def named_report(clock: FakeClock, names: list[str], seq: int = 1) -> Report:
    return decode_report(body("web01", seq, clock(), [measurement(n, clock()) for n in names]))


def test_every_form_of_every_collector_family_is_held_back(
    make_service: MakeService, clock: FakeClock
) -> None:
    """Derived from the real exposition, so a family added later is covered too."""
    service = make_service([])
    stems = set()
    for family in own_families(service):
        stem = family.removeprefix("runwatch_")
        stems.add(next((stem.removesuffix(s) for s in FAMILY_SUFFIXES if stem.endswith(s)), stem))
    # Names ending in _total are refused by the schema already (measurements are gauges).
    names = sorted(
        stem + suffix for stem in stems for suffix in ("", *FAMILY_SUFFIXES) if suffix != "_total"
    )
    assert "ingest_duration_seconds_bucket" in names and "build_info" in names
    reports = [measurement(name, clock()) for name in names]
    service.ingest("web01", decode_report(body("web01", 1, clock(), reports)))
    text = service.metrics.render().decode()
    assert not re.search(r'^runwatch_\w+\{host="web01",check="fake"', text, re.MULTILINE)
    promtool_check(text)


def test_a_name_or_label_name_with_a_trailing_newline_is_refused() -> None:
    now = 1_800_000_000.0
    for bad in (
        measurement("free_bytes\n", now),
        measurement("free_bytes", now, {"device\n": "sda"}),
        measurement("free_bytes", now, {"__name__": "runwatch_host_state"}),
    ):
        with pytest.raises(msgspec.ValidationError):
            decode_report(body("web01", 1, now, [bad]))


# -- whatever agents send, /metrics parses ------------------------------------------------------

_COLLECTOR_FORMS = st.sampled_from(
    [
        "ingest_duration_seconds_bucket",
        "ingest_duration_seconds_sum",
        "build_info",
        "reports_rejected_created",
        "host_state",
        "rule_severity",
        "calls_open_info",
    ]
)
_NAMES = st.one_of(st.from_regex(r"\A[a-zA-Z_][a-zA-Z0-9_]{0,30}\n?\Z"), _COLLECTOR_FORMS)
_LABEL_NAMES = st.from_regex(r"\A[a-zA-Z_][a-zA-Z0-9_]{0,12}\n?\Z")
_LABEL_VALUES = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)

# promtool's style lints on names the agents chose: they are the agents' names, not a broken
# exposition (a parsing error is what must never happen).
_STYLE_LINTS = (
    "should be written in 'snake_case'",
    'should not have "_',
    "should not contain abbreviated units",
    "counter metrics should have",
    "metric names should not contain abbreviated units",
)


def _promtool_parses(text: str) -> None:
    result = subprocess.run(
        [tool("promtool", "prometheus"), "check", "metrics"],
        input=text,
        text=True,
        capture_output=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode in (0, 3), output
    problems = [
        line
        for line in output.splitlines()
        if line.strip() and not any(lint in line for lint in _STYLE_LINTS)
    ]
    assert not problems, output


def test_metrics_parse_whatever_names_and_labels_agents_send(tmp_path: Path) -> None:
    tool("promtool", "prometheus")
    clock = FakeClock()
    service = CollectorService(collector_config(tmp_path, []), clock=clock)
    seqs = iter(range(1, 10_000))
    try:

        @given(
            st.lists(
                st.tuples(_NAMES, st.dictionaries(_LABEL_NAMES, _LABEL_VALUES, max_size=3)),
                min_size=1,
                max_size=25,
            )
        )
        @settings(
            max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def scrape(items: list[tuple[str, dict[str, str]]]) -> None:
            now = clock()
            accepted = []
            for name, labels in items:
                one = body("web01", 0, now, [measurement(name, now, labels)])
                try:
                    decode_report(one)
                except (msgspec.ValidationError, ValueError):
                    continue  # the schema refuses it: the agent gets 422
                accepted.append(measurement(name, now, labels))
            if accepted:
                service.ingest("web01", decode_report(body("web01", next(seqs), now, accepted)))
            text = service.metrics.render().decode()
            assert len(families(text)) == len(set(families(text))), "one HELP line per family"
            _promtool_parses(text)

        scrape()
    finally:
        service.close()
