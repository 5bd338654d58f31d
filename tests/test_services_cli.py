"""`runwatch services [--json]` against a real collector, and its table from the API's JSON."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runwatch.cli.services import _print_services, causes
from tests.helpers import FS_RULE, GROUPS, write_collector_yaml
from tests.procs import Processes, read_url
from tests.test_cli import EXIT_OK, run

SERVICES = {
    "database": {
        "owner": "systems-administration",
        "title": "Database",
        "components": [{"hosts": ["db01"]}],
    },
    "web-shop": {
        "owner": "computer-operations",
        "components": [{"hosts": ["web*"], "need": "any"}],
        "depends_on": ["database"],
    },
}


@pytest.mark.slow
def test_services_against_a_collector(tmp_path: Path, processes: Processes) -> None:
    """No host has reported: both components match no host, so both services are out, and the
    web shop says why in words."""
    config = write_collector_yaml(
        tmp_path / "collector.yaml",
        tmp_path / "data",
        GROUPS,
        rules=[FS_RULE],
        services=SERVICES,
    )
    collector = processes.runwatch(
        "collector", config, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = read_url(collector)

    listed = run("services", "--json", "--collector", url)
    text = run("services", "--collector", url)

    assert listed.returncode == EXIT_OK, listed.stderr
    services = json.loads(listed.stdout)
    assert [(s["service"], s["state"]) for s in services] == [
        ("database", "outage"),
        ("web-shop", "outage"),
    ]
    assert text.returncode == EXIT_OK, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["SERVICE", "STATE", "SINCE", "OWNER", "WHY"]
    assert lines[1].split()[:2] == ["database", "outage"]
    assert "db01: matches no host" in lines[1]
    assert lines[2].split()[:2] == ["web-shop", "outage"]
    assert lines[2].endswith("depends on database (outage)")
    assert lines[3].strip() == "web*: matches no host"


def service(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "service": "payroll",
        "title": "Payroll",
        "owner": "systems-administration",
        "state": "degraded",
        "since": 1_800_000_000.0,
        "depends_on": [],
        "components": [],
    }
    return base | extra


def hosts_component(state: str, problems: list[dict[str, Any]], members: int = 2) -> Any:
    return {
        "name": "payroll servers",
        "service": None,
        "state": state,
        "members": members,
        "problems": problems,
    }


def test_causes_name_dependencies_then_problems_in_words() -> None:
    payroll = service(
        depends_on=[
            {"service": "database", "state": "maintenance"},
            {"service": "network", "state": "operational"},
        ],
        components=[
            hosts_component(
                "degraded",
                [
                    {
                        "host": "pay01",
                        "rule": "filesystem_full",
                        "labels": {"mountpoint": "/srv"},
                        "state": "WARNING",
                        "planned": False,
                    },
                    {
                        "host": "pay02",
                        "rule": "host_stale",
                        "labels": {},
                        "state": "STALE",
                        "planned": True,
                    },
                ],
            ),
            {"name": "service mail", "service": "mail", "state": "outage", "members": 1},
            hosts_component("operational", []),
        ],
    )

    assert causes(payroll) == [
        "depends on database (maintenance)",
        "pay01: filesystem_full {mountpoint=/srv} WARNING",
        "pay02: host_stale STALE (in a window)",
        "service mail (outage)",
    ]


def test_table_lines_up_and_continues_causes_below(capsys: pytest.CaptureFixture[str]) -> None:
    problem = {"host": "pay01", "rule": "r", "labels": {}, "state": "CRITICAL", "planned": False}
    rows = [
        service(
            components=[hosts_component("outage", [problem, {**problem, "host": "pay02"}])],
            state="outage",
        ),
        service(service="e-mail", state="operational", owner="ops", since=None),
    ]

    _print_services(rows, 1_800_000_120.0)

    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "SERVICE  STATE        SINCE           OWNER                   WHY",
        "payroll  outage       2 min ago       systems-administration  pay01: r CRITICAL",
        " " * 62 + "pay02: r CRITICAL",
        "e-mail   operational  -               ops                     -",
    ]


@pytest.mark.slow
def test_status_messages_from_the_command_line(tmp_path: Path, processes: Processes) -> None:
    from collector.auth import add_token

    config = write_collector_yaml(
        tmp_path / "collector.yaml",
        tmp_path / "data",
        GROUPS,
        rules=[FS_RULE],
        services={**SERVICES, "web-shop": {**SERVICES["web-shop"], "public": True}},
    )
    token_file = tmp_path / "operator.token"
    token_file.write_text(add_token(tmp_path / "data" / "operators.tokens", "alice") + "\n")
    collector = processes.runwatch(
        "collector", config, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = read_url(collector)
    opts = ("--collector", url, "--token-file", str(token_file))

    posted = run("status-message", "post", "Back by 14:00.", "--service", "web-shop", *opts)
    bad = run("status-message", "post", "x", "--service", "mail", *opts)
    updated = run("status-message", "update", "1", "Back by 13:30.", *opts)
    listed = run("status-message", "list", "--collector", url)
    ended = run("status-message", "end", "1", "--json", *opts)
    again = run("status-message", "end", "1", *opts)
    after = run("status-message", "list", "--all", "--json", "--collector", url)

    assert posted.returncode == EXIT_OK, posted.stderr
    assert posted.stdout.strip() == "message 1 posted: Back by 14:00."
    assert bad.returncode == 1 and "unknown service 'mail'" in bad.stderr
    assert updated.stdout.strip() == "message 1 updated: Back by 13:30."
    assert listed.stdout.splitlines()[0].split() == [
        "ID",
        "SERVICE",
        "POSTED",
        "BY",
        "ENDED",
        "TEXT",
    ]
    assert "web-shop" in listed.stdout and "alice" in listed.stdout
    assert json.loads(ended.stdout)["ended_by"] == "alice"
    assert again.returncode == 1 and "HTTP 404" in again.stderr
    assert [m["ended_at"] is not None for m in json.loads(after.stdout)] == [True]
