"""A real Prometheus on loopback scrapes a real collector fed by simulated agents; every panel
query of every shipped dashboard returns data, and the shipped alert rules load and evaluate.
The collector's /metrics needs a token (`operators: {metrics: token}`): Prometheus sends a
read-only operator token with `basic_auth` (job runwatch) or `authorization` (Bearer).
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from checks.schema import encode
from collector.auth import ROLE_READ_ONLY, add_token
from tests.fakes import JSONHandler
from tests.grafana import REPO, dashboards, fill, panels, resolve_variables
from tests.helpers import FS_RULE, RUNWATCH, tool
from tests.helpers.reports import check_run, measurement, wire_report
from tests.procs import Processes, get_text, post_report, promtool_check, read_url, wait_for

pytestmark = pytest.mark.slow

SHOWCASE = "db01.example.net"  # the host the Host detail dashboard is checked with
DESK_OK, DESK_RETRY, DESK_REFUSE = "db01.example.net", "flaky.example.net", "refused.example.net"
GIB = 1024**3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class HelpDeskHandler(JSONHandler):
    """A webhook receiver: accepts events, except opens for two hosts (503 and 400)."""

    events: list[dict[str, Any]]

    def answer(self, raw: bytes) -> tuple[int, bytes]:
        body = json.loads(raw)
        self.server.events.append(body)  # type: ignore[attr-defined]
        status = 200
        if body.get("event") == "open" and body.get("host") == DESK_RETRY:
            status = 503
        elif body.get("event") == "open" and body.get("host") == DESK_REFUSE:
            status = 400
        return status, json.dumps({"id": f"W{len(self.server.events)}"}).encode()  # type: ignore[attr-defined]


@dataclass
class SimulatedAgent:
    """Sends reports for one host the way an agent does: bearer token, JSON, rising seq."""

    host: str
    url: str
    token: str
    interval: float = 60.0
    seq: int = 0
    sent: list[int] = field(default_factory=list)

    def send(
        self,
        measurements: list[tuple[str, str, float, dict[str, str]]],
        failed: tuple[str, ...] = (),
    ) -> int:
        self.seq += 1
        now = time.time()
        items = [
            measurement(check, name, value, now, labels=labels)
            for check, name, value, labels in measurements
        ]
        checks = sorted({check for check, *_ in measurements} | set(failed))
        runs = [
            check_run(
                check, now, self.interval, error="simulated failure" if check in failed else None
            )
            for check in checks
        ]
        report = wire_report(self.host, self.seq, now, items, runs, interval=self.interval)
        return post_report(self.url, self.token, encode(report))


def system(round_: int, var_used: float) -> list[tuple[str, str, float, dict[str, str]]]:
    """What the shipped system checks report, with values that move from round to round."""
    wobble = (round_ % 5) / 50
    out = [("cpu", "cpu_utilization_ratio", 0.2 + wobble, {})]
    out += [
        ("cpu", "cpu_mode_ratio", share + wobble / 4, {"mode": mode})
        for mode, share in (("user", 0.12), ("system", 0.05), ("iowait", 0.02), ("idle", 0.8))
    ]
    out += [
        ("load", name, value + wobble, {})
        for name, value in (
            ("load1", 1.2),
            ("load5", 1.0),
            ("load15", 0.8),
            ("load1_per_core", 0.3),
            ("load5_per_core", 0.25),
            ("load15_per_core", 0.2),
        )
    ]
    out += [
        ("memory", name, value, {})
        for name, value in (
            ("memory_total_bytes", 16 * GIB),
            ("memory_used_bytes", (6 + round_ % 3) * GIB),
            ("memory_available_bytes", (10 - round_ % 3) * GIB),
            ("memory_used_ratio", 0.4 + wobble),
            ("swap_total_bytes", 2 * GIB),
            ("swap_used_bytes", 0.1 * GIB),
            ("swap_used_ratio", 0.05),
        )
    ]
    for mountpoint, device, used in (("/", "/dev/sda1", 0.41), ("/var", "/dev/sda2", var_used)):
        labels = {"mountpoint": mountpoint, "device": device, "fstype": "ext4"}
        out += [
            ("filesystem", "fs_used_ratio", used, labels),
            ("filesystem", "fs_free_bytes", (1 - used) * 100 * GIB, labels),
            ("filesystem", "fs_size_bytes", 100 * GIB, labels),
            ("filesystem", "fs_inodes_used_ratio", 0.1, labels),
        ]
    disk = {"device": "sda"}
    out += [
        ("diskio", name, value * (1 + wobble), disk)
        for name, value in (
            ("disk_read_bytes_per_second", 2e6),
            ("disk_written_bytes_per_second", 5e6),
            ("disk_reads_per_second", 40),
            ("disk_writes_per_second", 90),
            ("disk_busy_ratio", 0.1),
        )
    ]
    nic = {"interface": "eth0"}
    out += [
        ("network", name, value, nic)
        for name, value in (
            ("net_received_bytes_per_second", 1e6 * (1 + wobble)),
            ("net_sent_bytes_per_second", 3e5 * (1 + wobble)),
            ("net_receive_errors_per_second", 0.0),
            ("net_transmit_errors_per_second", 0.0),
            ("net_receive_drops_per_second", 0.0),
            ("net_transmit_drops_per_second", 0.0),
        )
    ]
    out += [
        ("processes", "processes", 180 + round_, {}),
        ("uptime", "uptime_seconds", 86400.0 + round_, {}),
    ]
    return out


def backups(round_: int, snapshot_age: float) -> list[tuple[str, str, float, dict[str, str]]]:
    """A restic repository, a job status file, an archive directory and WAL archiving."""
    restic = {"job": "nightly", "tool": "restic", "repo": "/srv/restic"}
    out = [
        ("nightly", name, value, restic)
        for name, value in (
            ("backup_probe_success", 1),
            ("backup_snapshots", 30 + round_),
            ("backup_last_snapshot_timestamp_seconds", time.time() - snapshot_age),
            ("backup_last_snapshot_age_seconds", snapshot_age),
            ("backup_repository_size_bytes", 500 * GIB + round_ * GIB),
            ("backup_last_size_bytes", 120 * GIB),
            ("backup_last_added_bytes", 2 * GIB + round_),
        )
    ]
    job = {"job": "dump", "tool": "pg_dump"}
    out += [
        ("dump", name, value, job)
        for name, value in (
            ("backup_statusfile_age_seconds", 3600),
            ("backup_last_status", round_ % 2),
            ("backup_last_success_age_seconds", 3600 + round_),
            ("backup_last_duration_seconds", 300),
        )
    ]
    archive = {"archive": "/srv/archive"}
    out += [
        ("archive", name, value, archive)
        for name, value in (
            ("archive_files", 100 + round_),
            ("archive_bytes", 40 * GIB + round_ * 1e6),
            ("archive_newest_file_age_seconds", 1800 + round_),
            ("archive_oldest_file_age_seconds", 86400 * 30),
            ("archive_retention_breached", 0),
            ("archive_verify_success", 1),
        )
    ]
    cluster = {"cluster": "main"}
    out += [
        ("pg_archiver", name, value, cluster)
        for name, value in (
            ("pg_archiver_probe_success", 1),
            ("pg_archiver_archived", 5000 + 3 * round_),
            ("pg_archiver_failed", 2),
            ("pg_archiver_failing", 0),
            ("pg_archiver_failing_for_seconds", 0),
            ("pg_archiver_last_archived_timestamp_seconds", time.time() - 20),
            ("pg_archiver_ready_files", 3 + round_ % 4),
        )
    ]
    return out


INSTANT_RULES = [
    # The shipped rules wait 5 minutes or more; these make calls open within the test.
    {**FS_RULE, "name": "test_var_full", "match": {"mountpoint": "/var"}, "for": "0s"},
    {
        "name": "test_backup_late",
        "metric": "backup_last_snapshot_age_seconds",
        "warning": 93600,
        "critical": 172800,
        "owner": "computer-operations",
    },
]


@dataclass
class Stack:
    collector_url: str
    prometheus_url: str
    desk_events: list[dict[str, Any]]
    scrape_token: str  # a read-only operator token: /metrics needs one


# Jobs that only check the scrape's `up`: the samples are dropped, so dashboards and alerts see
# the `runwatch` job alone.
UP_ONLY = [{"source_labels": ["__name__"], "regex": ".+", "action": "drop"}]


def query(prometheus: str, expr: str) -> Any:
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer
    return answer["data"]


def label_values(prometheus: str, metric: str, label: str) -> list[str]:
    params = {"match[]": metric} if metric else {}
    url = f"{prometheus}/api/v1/label/{label}/values?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:
        return list(json.load(response)["data"])


def start_prometheus(started: Processes, tmp: Path, port: int) -> None:
    """Start Prometheus on 127.0.0.1:PORT with TMP/prometheus.yml, its data in TMP/tsdb."""
    started.start(
        tool("prometheus", "prometheus"),
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        "--log.level=warn",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("prometheus-stack")
    started = Processes()
    desk = ThreadingHTTPServer(("127.0.0.1", 0), HelpDeskHandler)
    desk.events = []  # type: ignore[attr-defined]
    threading.Thread(target=desk.serve_forever, daemon=True).start()
    try:
        data = tmp / "data"
        hosts = [
            "web01.example.net",
            "web02.example.net",
            SHOWCASE,
            DESK_RETRY,
            DESK_REFUSE,
            "gone.example.net",
        ]
        tokens = {host: add_token(data / "agents.tokens", host) for host in hosts}
        scrape_token = add_token(data / "operators.tokens", "prometheus", role=ROLE_READ_ONLY)
        token_file = tmp / "prometheus.token"
        token_file.write_text(scrape_token + "\n")
        (tmp / "collector.yaml").write_text(
            yaml.safe_dump(
                {
                    "listen": "127.0.0.1:0",
                    "data_dir": str(data),
                    "sinks": {
                        "helpdesk": {"type": "builtin"},
                        "desk": {
                            "type": "webhook",
                            "url": f"http://127.0.0.1:{desk.server_port}/hook",
                            "timeout": "2s",
                        },
                    },
                    "groups": {
                        "systems-administration": {
                            "sink": "helpdesk",
                            "assign": "Systems Administration",
                        },
                        "computer-operations": {"sink": "desk", "assign": "Computer Operations"},
                    },
                    "staleness": {"after_intervals": 3, "owner": "systems-administration"},
                    "evaluation_interval": "0.5s",
                    "sync_interval": "1s",
                    "outbox": {"first_retry": "1s", "max_retry": "2s"},
                    "rule_files": [str(REPO / "config" / "rules" / "*.yaml")],
                    "rules": INSTANT_RULES,
                    "operators": {"metrics": "token"},
                    # For the services panels: the web servers (need one) rest on the database.
                    "services": {
                        "database": {
                            "owner": "systems-administration",
                            "components": [{"hosts": [SHOWCASE]}],
                        },
                        "web-shop": {
                            "owner": "computer-operations",
                            "title": "Web shop",
                            "components": [{"hosts": ["web0*.example.net"], "need": "any"}],
                            "depends_on": ["database"],
                        },
                    },
                }
            )
        )
        collector = started.start(
            RUNWATCH, "collector", "--config", str(tmp / "collector.yaml"), stderr=subprocess.PIPE
        )
        collector_url = read_url(collector)
        # Keep reading its log, or a full pipe would stall it.
        threading.Thread(target=collector.stderr.read, daemon=True).start()  # type: ignore[union-attr]
        target = collector_url.removeprefix("http://")

        port = free_port()
        prometheus_url = f"http://127.0.0.1:{port}"
        (tmp / "prometheus.yml").write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(REPO / "config" / "prometheus" / "runwatch-alerts.yml")],
                    "scrape_configs": [
                        {
                            "job_name": "runwatch",
                            "scrape_timeout": "1s",
                            "static_configs": [{"targets": [target]}],
                            "basic_auth": {
                                "username": "prometheus",
                                "password_file": str(token_file),
                            },
                        },
                        {
                            "job_name": "runwatch-bearer",
                            "scrape_timeout": "1s",
                            "static_configs": [{"targets": [target]}],
                            "authorization": {
                                "type": "Bearer",
                                "credentials_file": str(token_file),
                            },
                            "metric_relabel_configs": UP_ONLY,
                        },
                        {
                            "job_name": "runwatch-anonymous",
                            "scrape_timeout": "1s",
                            "static_configs": [{"targets": [target]}],
                            "metric_relabel_configs": UP_ONLY,
                        },
                    ],
                }
            )
        )
        start_prometheus(started, tmp, port)

        def scraped() -> bool:
            try:
                result = query(prometheus_url, 'up{job="runwatch"} == 1')["result"]
            except OSError:
                return False
            return bool(result)

        # Counters must move after the first scrape, or rate() sees no change.
        wait_for("Prometheus to scrape the collector", scraped, timeout=60)
        agents = {host: SimulatedAgent(host, collector_url, tokens[host]) for host in hosts}
        agents["gone.example.net"].interval = 1.0  # silent after its first report: STALE
        assert post_report(collector_url, "not-a-token", b"{}") == 401
        for round_ in range(12):
            web = agents["web01.example.net"]
            web.sent.append(web.send(system(round_, 0.62), failed=("ntp",)))
            web2 = agents["web02.example.net"]
            # /var fills, then is cleaned up: a call opens and resolves, again and again.
            web2.sent.append(web2.send(system(round_, 0.97 if round_ % 4 < 2 else 0.5)))
            db = agents[SHOWCASE]
            db.sent.append(db.send(system(round_, 0.97) + backups(round_, 2e5)))
            for host in (DESK_RETRY, DESK_REFUSE):
                agents[host].sent.append(agents[host].send(backups(round_, 2e5)))
            if round_ == 0:
                gone = agents["gone.example.net"]
                gone.sent.append(gone.send(system(round_, 0.3)))
            time.sleep(1.0)
        for agent in agents.values():
            assert set(agent.sent) == {202}, (agent.host, agent.sent)
        wait_for(
            "the webhook desk to see an acknowledged call",
            lambda: query(prometheus_url, "sum(runwatch_call_acknowledge_seconds_count) > 0")[
                "result"
            ],
            timeout=30,
        )
        time.sleep(3)  # a few more scrapes of the final state
        yield Stack(
            collector_url,
            prometheus_url,
            desk.events,  # type: ignore[attr-defined]
            scrape_token,
        )
    finally:
        started.stop_all()
        desk.shutdown()
        desk.server_close()


def test_collector_output_passes_promtool_check_metrics(stack: Stack) -> None:
    request = urllib.request.Request(
        f"{stack.collector_url}/metrics", headers={"Authorization": f"Bearer {stack.scrape_token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        promtool_check(response.read().decode())


def test_prometheus_scrapes_the_collector_with_gzip(stack: Stack) -> None:
    (target,) = query(stack.prometheus_url, 'up{job="runwatch"}')["result"]
    assert target["value"][1] == "1"
    request = urllib.request.Request(
        f"{stack.collector_url}/metrics",
        headers={"Accept-Encoding": "gzip", "Authorization": f"Bearer {stack.scrape_token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip"


def test_prometheus_scrapes_metrics_behind_a_token_and_not_without(stack: Stack) -> None:
    def up() -> dict[str, str]:
        return {
            series["metric"]["job"]: series["value"][1]
            for series in query(stack.prometheus_url, "up")["result"]
        }

    wait_for("Prometheus to scrape every job", lambda: len(up()) == 3, timeout=30)
    assert up() == {"runwatch": "1", "runwatch-bearer": "1", "runwatch-anonymous": "0"}
    with pytest.raises(urllib.error.HTTPError) as refused:
        get_text(f"{stack.collector_url}/metrics")
    assert refused.value.code == 401


BOARDS = dashboards()
PANELS = [
    (name, panel)
    for name, board in BOARDS.items()
    for panel in panels(board)
    if panel.get("targets")
]


@pytest.mark.parametrize(
    ("name", "panel"), PANELS, ids=[f"{name}: {panel['title']}" for name, panel in PANELS]
)
def test_every_panel_query_returns_data(stack: Stack, name: str, panel: dict[str, Any]) -> None:
    values = resolve_variables(
        BOARDS[name],
        lambda metric, label: label_values(stack.prometheus_url, metric, label),
        preferred={"host": SHOWCASE},
    )
    for target in panel["targets"]:
        expr = fill(target["expr"], values)
        data = query(stack.prometheus_url, expr)
        series = data["result"] if data["resultType"] != "scalar" else [{"value": data["result"]}]
        finite = [s for s in series if math.isfinite(float(s["value"][1]))]
        assert finite, f"[{target['refId']}] {expr}\nreturned {series}"


def test_the_showcase_host_has_what_the_host_detail_needs(stack: Stack) -> None:
    calls = query(stack.prometheus_url, f'runwatch_open_call_severity{{host="{SHOWCASE}"}}')
    assert {s["metric"]["rule"] for s in calls["result"]} >= {"test_var_full", "test_backup_late"}


def test_the_shipped_alert_rules_load_and_see_the_dead_letter(stack: Stack) -> None:
    with urllib.request.urlopen(f"{stack.prometheus_url}/api/v1/rules", timeout=10) as response:
        groups = json.load(response)["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == 8
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))

    def dead_letter_alert() -> list[Any]:
        alerts = query(
            stack.prometheus_url, 'ALERTS{alertname="RunwatchOutboxDeadLetters", sink="desk"}'
        )
        return list(alerts["result"])

    assert wait_for("the dead-letter alert to be pending", dead_letter_alert, timeout=15)
    quiet = query(stack.prometheus_url, 'ALERTS{alertname="RunwatchCollectorDown"}')
    assert quiet["result"] == []


def test_the_help_desk_saw_the_calls(stack: Stack) -> None:
    opens = [e for e in stack.desk_events if e["event"] == "open"]
    # The database service's outage opens a service-level call too (host `*`).
    assert {e["host"] for e in opens} - {"*"} == {SHOWCASE, DESK_RETRY, DESK_REFUSE}
    assert sum(1 for e in opens if e["host"] == DESK_RETRY) >= 2, "retried after 503"


# -- the default setup: only the built-in register ------------------------------------------------

SINK_FAMILIES = ("runwatch_outbox_", "runwatch_sink_")
SINK_PANELS = [
    (name, panel)
    for name, panel in PANELS
    if any(family in t["expr"] for t in panel["targets"] for family in SINK_FAMILIES)
]


@pytest.fixture(scope="module")
def quiet_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus scraping a collector whose only sink is the built-in register, with no
    delivery ever made: the outbox is quiet."""
    tmp = tmp_path_factory.mktemp("prometheus-quiet")
    started = Processes()
    try:
        (tmp / "collector.yaml").write_text(
            yaml.safe_dump(
                {
                    "listen": "127.0.0.1:0",
                    "data_dir": str(tmp / "data"),
                    "sinks": {"helpdesk": {"type": "builtin"}},
                    "groups": {"ops": {"sink": "helpdesk", "assign": "Operations"}},
                    "staleness": {"owner": "ops"},
                }
            )
        )
        collector = started.start(
            RUNWATCH, "collector", "--config", str(tmp / "collector.yaml"), stderr=subprocess.PIPE
        )
        target = read_url(collector).removeprefix("http://")
        threading.Thread(target=collector.stderr.read, daemon=True).start()  # type: ignore[union-attr]
        port = free_port()
        (tmp / "prometheus.yml").write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s"},
                    "scrape_configs": [
                        {"job_name": "runwatch", "static_configs": [{"targets": [target]}]}
                    ],
                }
            )
        )
        start_prometheus(started, tmp, port)
        url = f"http://127.0.0.1:{port}"

        def scraped_twice() -> bool:
            try:
                expr = "count_over_time(up{job='runwatch'}[1m]) >= 3"
                return bool(query(url, expr)["result"])
            except OSError:
                return False

        wait_for("Prometheus to scrape the quiet collector three times", scraped_twice, timeout=60)
        yield url
    finally:
        started.stop_all()


def test_the_sink_panels_have_panels_to_check() -> None:
    assert len(SINK_PANELS) >= 5, [panel["title"] for _, panel in SINK_PANELS]


@pytest.mark.parametrize(
    ("name", "panel"), SINK_PANELS, ids=[f"{name}: {panel['title']}" for name, panel in SINK_PANELS]
)
def test_a_quiet_outbox_reads_zero_in_every_sink_panel(
    quiet_prometheus: str, name: str, panel: dict[str, Any]
) -> None:
    values = resolve_variables(
        BOARDS[name],
        lambda metric, label: label_values(quiet_prometheus, metric, label),
        preferred={},
    )
    for target in panel["targets"]:
        expr = fill(target["expr"], values)
        series = query(quiet_prometheus, expr)["result"]
        assert [s["metric"].get("sink") for s in series] and all(
            float(s["value"][1]) == 0 for s in series
        ), f"[{target['refId']}] {expr}\nreturned {series}"
        assert {s["metric"].get("sink") for s in series} == {"helpdesk"}, series
