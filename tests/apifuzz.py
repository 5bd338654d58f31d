"""Fuzz the collector's HTTP API: schemathesis cases from /openapi.json, and adversarial reports.

Used by tests/test_fuzz_api.py (a bounded number of examples) and, with many more, by
`RUNWATCH_FUZZ_EXAMPLES=2000 pytest -m '' -s tests/test_fuzz_api.py` (the long run).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st
import uvicorn
from hypothesis import HealthCheck, given, settings

from collector.api.application import create_app
from collector.app import CollectorService
from collector.server import bind, url_of


@dataclass
class FuzzFigures:
    """What a fuzzing run did: requests tried, answers by status class, and every 5xx."""

    tried: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)

    def count(self, status: int, what: str) -> None:
        self.tried += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if status >= 500:
            self.server_errors.append(f"{status} {what}")

    def summary(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_status.items()))
        return f"{self.tried} requests, {len(self.server_errors)} 5xx ({statuses})"


@contextlib.contextmanager
def serve_in_thread(service: CollectorService) -> Iterator[str]:
    """Serve the collector's API on a free loopback port in a thread; yield its URL."""
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), log_level="warning", access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield url_of(sock)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def fuzz_openapi(
    url: str,
    tokens: dict[str, str],
    examples: int,
    figures: FuzzFigures,
    after_each: Callable[[], None] | None = None,
) -> None:
    """Send `examples` schemathesis cases to every operation of the collector's /openapi.json.

    Each case goes with no token, a wrong one, or one of `tokens` (agent, operator)."""
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    auth_headers = [None, "Bearer rwt_wrong", *(f"Bearer {t}" for t in tokens.values())]
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(), auth=st.sampled_from(auth_headers))
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def send(case: Any, auth: str | None) -> None:
            headers = {"Authorization": auth} if auth else {}
            response = case.call(base_url=url, headers=headers, timeout=30)
            figures.count(
                response.status_code,
                f"{case.method} {case.formatted_path} -> {response.text[:300]}",
            )
            if after_each is not None:
                after_each()

        send()


# -- adversarial reports -----------------------------------------------------------------------

# Literals JSON has no word for, put in the body as text: msgspec reads 1e999 as infinity.
_RAW = {"__NAN__": "NaN", "__INF__": "1e999", "__NINF__": "-1e999", "__INFINITY__": "Infinity"}

weird_numbers = st.one_of(
    st.sampled_from(list(_RAW)),
    st.sampled_from(
        [
            0,
            -1,
            -0.0,
            1e-320,
            1e308,
            -1e308,
            2**53 + 1,
            2**63 - 1,
            2**63,
            2**64,
            10**30,
            253402300800,
            32503680000,
            1e15,
        ]
    ),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**70), max_value=2**70),
)
# Names and values in any script, with controls, NULs and lone surrogates in JSON escapes.
unicode_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
    st.sampled_from(
        [
            "\x00",
            "a\x00b",
            "\ud800",
            "\udfff",
            "é" * 100,
            "😀" * 300,
            "",
            " ",
            "../../etc/passwd",
            "'; DROP TABLE hosts; --",
            "{{ 7*7 }}",
            "%s%n",
            "a" * 5000,
        ]
    ),
)


def _nested(depth: int) -> str:
    """Arrays and objects `depth` deep, as JSON text (too deep for json.dumps to write)."""
    return '{"x": [' * (depth // 2) + '"deep"' + "]}" * (depth // 2)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), weird_numbers, unicode_text),
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(unicode_text, children, max_size=5)
    ),
    max_leaves=20,
)


def valid_report(host: str, seq: int, now: float) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "host": host,
        "agent_version": "fuzz",
        "boot_id": "boot-fuzz",
        "seq": seq,
        "sent_at": now,
        "interval_seconds": 60.0,
        "measurements": [
            {
                "check": "filesystem",
                "name": "fs_used_ratio",
                "value": 0.5,
                "unit": "ratio",
                "labels": {"mountpoint": "/"},
                "timestamp": now,
            }
        ],
        "checks": [
            {
                "check": "filesystem",
                "type": "filesystem",
                "interval_seconds": 60.0,
                "started_at": now,
                "duration_seconds": 0.01,
            }
        ],
    }


_PATHS = [
    ("seq",),
    ("sent_at",),
    ("interval_seconds",),
    ("host",),
    ("boot_id",),
    ("agent_version",),
    ("schema_version",),
    ("labels",),
    ("measurements",),
    ("checks",),
    ("measurements", 0, "value"),
    ("measurements", 0, "timestamp"),
    ("measurements", 0, "name"),
    ("measurements", 0, "check"),
    ("measurements", 0, "unit"),
    ("measurements", 0, "labels"),
    ("checks", 0, "started_at"),
    ("checks", 0, "duration_seconds"),
    ("checks", 0, "interval_seconds"),
    ("checks", 0, "check"),
    ("checks", 0, "type"),
    ("checks", 0, "output"),
    ("checks", 0, "error"),
    ("measurements", 0, "extra_field"),
    ("extra_field",),
]


def _slot(report: dict[str, Any], path: tuple[Any, ...]) -> tuple[Any, Any]:
    """The container and key at `path`, or the report's top level where an earlier change
    left no such place."""
    target: Any = report
    try:
        for part in path[:-1]:
            target = target[part]
        if isinstance(target, dict) or (isinstance(target, list) and path[-1] < len(target)):
            return target, path[-1]
    except (KeyError, IndexError, TypeError):
        pass
    return report, str(path[-1])


@st.composite
def adversarial_reports(draw: st.DrawFn, host: str, seqs: Callable[[], int], now: float) -> bytes:
    """A report body for `host` with one or more hostile changes."""
    report = valid_report(host, seqs(), now)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        kind = draw(
            st.sampled_from(["number", "text", "json", "labels", "seq", "nested", "many", "time"])
        )
        path = draw(st.sampled_from(_PATHS))
        target, leaf = _slot(report, path)
        if kind == "number":
            target[leaf] = draw(weird_numbers)
        elif kind == "text":
            target[leaf] = draw(unicode_text)
        elif kind == "json":
            target[leaf] = draw(json_values)
        elif kind == "labels":
            # Huge label sets: many labels, long values, on a measurement or the host.
            size = draw(st.sampled_from([50, 500, 5000]))
            value = draw(st.sampled_from(["v", "é" * 1024, "x" * 1025]))
            labels = {f"l{i}": value for i in range(size)}
            where, _ = _slot(report, ("measurements", 0, "labels"))
            (where if draw(st.booleans()) else report)["labels"] = labels
        elif kind == "seq":
            report["seq"] = draw(st.sampled_from([0, 1, 2**31, 2**63 - 1, 2**63, 2**64, -1]))
        elif kind == "nested":
            depth = draw(st.sampled_from([10, 100, 1000, 5000]))
            target[leaf] = f"__DEEP_{depth}__"
        elif kind == "many":
            count = draw(st.sampled_from([2, 100, 5000]))
            same = draw(st.booleans())  # one series over and over, or many series
            report["measurements"] = [
                {
                    **valid_report(host, 0, now)["measurements"][0],
                    "name": "m" if same else f"m_{i}",
                    "labels": {"i": str(i % 7)},
                }
                for i in range(count)
            ]
        else:
            stamp = draw(
                st.sampled_from(
                    [
                        0.0,
                        1.0,
                        now - 86400 * 365 * 50,
                        now + 86400 * 365,
                        now + 86400 * 365 * 1000,
                        1e12,
                        1e18,
                        1e300,
                    ]
                )
            )
            field_path = draw(
                st.sampled_from(
                    [("sent_at",), ("measurements", 0, "timestamp"), ("checks", 0, "started_at")]
                )
            )
            target, leaf = _slot(report, field_path)
            target[leaf] = stamp
    text = json.dumps(report, allow_nan=True)
    for marker, literal in _RAW.items():
        text = text.replace(f'"{marker}"', literal)
    for depth in (10, 100, 1000, 5000):
        text = text.replace(f'"__DEEP_{depth}__"', _nested(depth))
    return text.encode("utf-8", "surrogatepass")


def store_snapshot(service: CollectorService) -> Any:
    """Every row of every table of the service's store, to compare before and after."""
    backend = service.config.store
    if backend.backend == "sqlite":
        connection = sqlite3.connect(service.config.data_dir / "runwatch.db")
        try:
            tables = [
                row[0]
                for row in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
                )
            ]
            return {
                table: sorted(map(repr, connection.execute(f'SELECT * FROM "{table}"')))
                for table in tables
            }
        finally:
            connection.close()
    import psycopg

    assert backend.dsn is not None
    with psycopg.connect(backend.dsn, autocommit=True) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() ORDER BY table_name"
            )
        ]
        return {
            table: sorted(map(repr, connection.execute(f'SELECT * FROM "{table}"')))
            for table in tables
        }
