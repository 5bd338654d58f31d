"""The shipped Grafana dashboards and Prometheus files: well-formed, checked by promtool.

Whether every panel's query returns data from a real Prometheus is in test_prometheus.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.app import CollectorService
from tests.grafana import DASHBOARDS, REPO, dashboards, fill, panels, queries
from tests.helpers import collector_config, tool
from tests.test_shipped_rules import EMITTED

PROMETHEUS = REPO / "config" / "prometheus"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
CHECK_SOURCES = "\n".join(path.read_text() for path in (REPO / "checks").glob("*.py"))
# Families Prometheus adds itself, or that come from prometheus_client's collectors.
SCRAPE_FAMILIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

BOARDS = dashboards()


def test_the_five_dashboards_are_shipped() -> None:
    titles = {board["title"] for board in BOARDS.values()}
    assert titles == {
        "runwatch / Fleet overview",
        "runwatch / Host detail",
        "runwatch / Backups & archives",
        "runwatch / Calls & service levels",
        "runwatch / Collector",
    }
    uids = [board["uid"] for board in BOARDS.values()]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_dashboard_is_provisionable_with_the_datasource_as_a_variable(name: str) -> None:
    board = BOARDS[name]
    assert "id" not in board or board["id"] is None, "an id ties the file to one Grafana"
    assert "__inputs" not in board, "no import-time inputs: the datasource is a variable"
    (datasource,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert datasource["name"] == "datasource" and datasource["query"] == "prometheus"
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
    ids = [panel["id"] for panel in panels(board)]
    assert len(set(ids)) == len(ids), "panel ids are unique"
    for panel in panels(board):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        targets = panel["targets"]
        assert targets, f"{panel['title']}: no query"
        assert len({t["refId"] for t in targets}) == len(targets), panel["title"]
        for target in targets:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


@pytest.fixture(scope="module")
def collector_families(tmp_path_factory: pytest.TempPathFactory) -> frozenset[str]:
    """Every name of the collector's own families, as it holds them back from measurements."""
    service = CollectorService(collector_config(tmp_path_factory.mktemp("collector"), []))
    try:
        assert service.metrics.fleet is not None
        return service.metrics.fleet.reserved
    finally:
        service.close()


@pytest.mark.parametrize("query", queries(), ids=lambda q: q.id)
def test_every_metric_a_query_names_exists(query: Any, collector_families: frozenset[str]) -> None:
    """A runwatch_* name is a family of the collector or a measurement some check emits."""
    expr = fill(query.expr, {name: "x" for name in re.findall(r"\$\{?(\w+)", query.expr)})
    names = set(re.findall(r"\b(runwatch_[a-z0-9_]+|[a-z_]+)\s*(?:\{|\[|\)|$)", expr))
    for name in sorted(n for n in names if n.startswith("runwatch_")):
        family = re.sub(r"_(bucket|count|sum|total)$", "", name)
        if family in collector_families or name in collector_families:
            continue
        measurement = name.removeprefix("runwatch_")
        assert measurement in EMITTED or f'"{measurement}"' in CHECK_SOURCES, (
            f"{query.id}: {name} is neither a collector family nor emitted by a check"
        )
    for name in re.findall(r"\b(up|scrape_[a-z_]+)\{", expr):
        assert name in SCRAPE_FAMILIES, name


def test_provisioning_points_at_files() -> None:
    provider = yaml.safe_load(
        (REPO / "config" / "grafana" / "provisioning" / "dashboards" / "runwatch.yaml").read_text()
    )
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"]
    source = yaml.safe_load(
        (
            REPO
            / "config"
            / "grafana"
            / "provisioning"
            / "datasources"
            / "runwatch-prometheus.yaml"
        ).read_text()
    )
    assert source["datasources"][0]["type"] == "prometheus"
    assert list(DASHBOARDS.glob("*.json")), "dashboards beside the provisioning files"


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool", "prometheus"), *args],
        cwd=cwd,
        text=True,
        capture_output=True,
        check=False,
        timeout=120,
    )


def test_alert_rules_pass_promtool_check() -> None:
    result = promtool("check", "rules", "runwatch-alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    result = promtool("test", "rules", "runwatch-alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rule_tests_fail_when_a_rule_is_wrong(tmp_path: Path) -> None:
    """The unit tests can fail: a rule with a wrong threshold does not pass them."""
    rules = (PROMETHEUS / "runwatch-alerts.yml").read_text()
    broken = rules.replace(
        "runwatch_outbox_oldest_pending_age_seconds > 900",
        "runwatch_outbox_oldest_pending_age_seconds > 9000",
    )
    assert broken != rules
    (tmp_path / "runwatch-alerts.yml").write_text(broken)
    (tmp_path / "runwatch-alerts.test.yml").write_text(
        (PROMETHEUS / "runwatch-alerts.test.yml").read_text()
    )
    result = promtool("test", "rules", "runwatch-alerts.test.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "RunwatchOutboxStuck" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test() -> None:
    rules = yaml.safe_load((PROMETHEUS / "runwatch-alerts.yml").read_text())
    tests = yaml.safe_load((PROMETHEUS / "runwatch-alerts.test.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    tested = {
        case["alertname"] for test in tests["tests"] for case in test.get("alert_rule_test", [])
    }
    assert alerts == tested
    assert {
        "RunwatchCollectorDown",
        "RunwatchIngestFailing",
        "RunwatchOutboxStuck",
        "RunwatchOutboxDeadLetters",
        "RunwatchSinkErrors",
        "RunwatchManyAgentsStale",
        "RunwatchMetricsSlow",
    } <= alerts


def test_example_scrape_config_passes_promtool_check() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == {"runwatch", "runwatch-agent"}
