"""The worked example of docs/services.md: its config loads with the shipped rules, and the
morning it describes gives exactly the `runwatch services` table the page shows."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import msgspec
import pytest

from checks.schema import Measurement, Report
from collector.app import CollectorService
from collector.config import CollectorConfig, load_collector_config
from runwatch.cli.services import _print_services
from tests.helpers import FakeClock, Reporter
from tests.helpers.browser import browser, quiet_webdriver, shot  # noqa: F401 -- fixtures
from tests.helpers.reports import measurement

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "services.md"
DOCS_IMG = ROOT / "docs" / "img"


def fenced(language: str, containing: str) -> str:
    """The one fenced block of the page in `language` that contains `containing`."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```", PAGE.read_text(), re.S | re.M)
    (found,) = [block for block in blocks if containing in block]
    return str(found)


def example_config(tmp_path: Path) -> CollectorConfig:
    """The page's config, next to a copy of the shipped rules (`rule_files: [rules/*.yaml]`)."""
    shutil.copytree(ROOT / "config" / "rules", tmp_path / "rules")
    path = tmp_path / "collector.yaml"
    path.write_text(fenced("yaml", "file-shares:"), encoding="utf-8")
    return load_collector_config(path, {"data_dir": str(tmp_path / "data")})


def test_the_example_config_loads(tmp_path: Path) -> None:
    config = example_config(tmp_path)

    assert list(config.services) == ["e-mail", "database", "payroll", "web-shop", "file-shares"]
    assert [s.title for s in config.services.values() if s.public] == [
        "E-mail",
        "Payroll",
        "Web shop",
        "File shares",
    ]


# What each host of the example measures while all is well.
WELL: dict[str, list[tuple[str, str, float, dict[str, str]]]] = {
    "mail01": [
        ("process", "process_running", 1.0, {"process": "postfix"}),
        ("tcp", "tcp_connect_success", 1.0, {"port": "25"}),
    ],
    "db01": [("process", "process_running", 1.0, {"process": "postgres"})],
    "pay01": [("process", "process_running", 1.0, {"process": "payroll"})],
    "web01": [("http", "http_up", 1.0, {"url": "https://shop.example.org/"})],
    "web02": [("http", "http_up", 1.0, {"url": "https://shop.example.org/"})],
    "fs01": [],
    "fs02": [],
    "fs03": [],
}
LABELS = {"web01": {"role": "web"}, "web02": {"role": "web"}}


class Organisation:
    def __init__(self, service: CollectorService, clock: FakeClock) -> None:
        self.service = service
        self.clock = clock
        self.reporters = {host: Reporter(host, clock) for host in WELL}
        self.values = {host: list(items) for host, items in WELL.items()}

    def report(self, *hosts: str) -> None:
        for host in hosts or tuple(self.reporters):
            now = self.clock()
            reporter = self.reporters[host]
            items: list[Measurement] = [
                measurement("filesystem", "fs_used_ratio", 0.5, now, labels={"mountpoint": "/"})
            ]
            items += [
                measurement(check, name, value, now, labels=labels)
                for check, name, value, labels in self.values[host]
            ]
            checks = sorted({m.check for m in items})
            report: Report = reporter.compose(items, [reporter.run(c) for c in checks])
            report = msgspec.structs.replace(report, labels=LABELS.get(host, {}))
            self.service.ingest(host, report)

    def set(self, host: str, name: str, value: float) -> None:
        self.values[host] = [
            (check, metric, value if metric == name else old, labels)
            for check, metric, old, labels in self.values[host]
        ]


def the_morning(service: CollectorService, clock: FakeClock) -> None:
    """At 08:00 all is well. web02's shop stops answering, fs02 and fs03 fall silent, and pay01
    is patched inside a silence (its payroll process stopped). By 08:04 the collector has
    seen it all; the clock stops at 08:14."""
    org = Organisation(service, clock)
    org.report()
    service.tick()
    service.add_silence("alice", host="pay01", rule="*", duration=3600, reason="patching, CHG-311")
    org.set("web02", "http_up", 0.0)
    org.set("pay01", "process_running", 0.0)
    busy = ("mail01", "db01", "pay01", "web01", "web02", "fs01")
    for _ in range(4):
        clock.advance(60)
        org.report(*busy)
    service.tick()
    for _ in range(10):
        clock.advance(60)
        org.report(*busy)
    service.tick()


EIGHT = 1_800_000_000.0 - 1_800_000_000.0 % 86400 + 8 * 3600  # 08:00 UTC


def test_the_morning_of_the_example(tmp_path: Path, clock: FakeClock) -> None:
    """At 08:14 `runwatch services` says what the page says, and the file shares' outage has
    the one service-level call the page shows."""
    clock.now = EIGHT
    service = CollectorService(example_config(tmp_path), clock=clock)
    try:
        the_morning(service, clock)
        shown = _table(service.services(), clock())
        service_calls = [c for c in service.calls("open", None) if c.rule == "service_level"]
        stale = {c.host: c.id for c in service.calls("open", None) if c.rule == "host_stale"}
    finally:
        service.close()

    assert shown == fenced("console", "$ runwatch services").split("\n", 1)[1]
    (shares,) = service_calls
    page = fenced("text", "File shares: outage —")
    ids = {"N": str(shares.id), "F2": str(stale["fs02"]), "F3": str(stale["fs03"])}
    expected = re.sub(r"#(N|F2|F3)\b", lambda m: "#" + ids[m.group(1)], page)
    assert (shares.summary, shares.group) == ("File shares: outage", "systems-administration")
    assert shares.description.startswith(expected), shares.description


@pytest.mark.slow
def test_the_status_page_users_see_that_morning(
    browser: Any,  # noqa: F811 -- a fixture
    tmp_path: Path,
    clock: FakeClock,
) -> None:
    """docs/img/status-example.png: the example's status page at 08:14, served by the
    collector with the morning's states, taken by a headless browser."""
    import threading
    import time

    import uvicorn

    from collector.api.application import create_app
    from collector.server import bind, url_of

    clock.now = EIGHT
    service = CollectorService(example_config(tmp_path), clock=clock)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    try:
        the_morning(service, clock)
        service.status_messages.post(
            "alice", "The file servers' switch failed; a new one is on its way. Back by 11:00."
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        browser.get(url_of(sock) + "/status")
        body = browser.find_element("tag name", "body").text
        for seen in ("E-mail", "Payroll", "Web shop", "File shares", "Back by 11:00."):
            assert seen in body, seen
        for internal in ("fs02", "host_stale", "web02", "pay01", "Database", "alice"):
            assert internal not in body, internal
        assert "Posted just now." in body  # relative to the collector's clock
        path = shot(browser, "status-example", DOCS_IMG)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        server.should_exit = True
        if thread.is_alive():
            thread.join(10)
        sock.close()
        service.close()


def _table(services: list[dict[str, Any]], now: float) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _print_services(services, now)
    return out.getvalue()


def test_the_shipped_configs_services_example_loads(tmp_path: Path) -> None:
    """The commented `services:` and `status_page:` of config/collector.yaml, uncommented, load
    with the shipped config and rules."""
    shipped = (ROOT / "config" / "collector.yaml").read_text(encoding="utf-8")
    lines = shipped.splitlines()
    start = lines.index("# services:")
    example = []
    for line in lines[start:]:
        body = line[2:]
        if line.startswith("# ") and (
            body[:1].isspace() or body.startswith(("services:", "status_page:"))
        ):
            example.append(body)
    assert example[0] == "services:" and example[-1].startswith("status_page:")
    shutil.copytree(ROOT / "config" / "rules", tmp_path / "rules")
    path = tmp_path / "collector.yaml"
    path.write_text(shipped + "\n" + "\n".join(example) + "\n", encoding="utf-8")

    config = load_collector_config(path, {"data_dir": str(tmp_path / "data")})

    assert set(config.services) == {"web-shop", "database"}
    assert config.status_page.enabled
