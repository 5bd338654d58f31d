"""The shipped rules watch metrics that the shipped checks really emit."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from checks.registry import AnyCheckOptions, build_check
from checks.settings import convert

REPO = Path(__file__).resolve().parent.parent
CHECK_SOURCES = "\n".join(p.read_text() for p in (REPO / "checks").glob("*.py"))


def system_names() -> set[str]:
    """Names the system checks emit on this host (some are built, e.g. load5_per_core)."""
    names = set()
    for kind in ("cpu", "load", "memory", "filesystem", "network", "processes", "uptime"):
        check = build_check(convert({"type": kind}, AnyCheckOptions))  # type: ignore[arg-type]
        names |= {m.name for m in check.collect() + check.collect()}
    return names


EMITTED = system_names()
RULES = [
    (path.name, rule)
    for path in sorted((REPO / "config" / "rules").glob("*.yaml"))
    for rule in yaml.safe_load(path.read_text())["rules"]
]


@pytest.mark.parametrize(
    ("file", "rule"), [pytest.param(f, r, id=f"{f}: {r['name']}") for f, r in RULES]
)
def test_rule_metric_is_emitted_by_a_check(file: str, rule: dict[str, object]) -> None:
    assert rule["metric"] in EMITTED or f'"{rule["metric"]}"' in CHECK_SOURCES, (
        f"{file}: rule {rule['name']} watches {rule['metric']}, which no check emits"
    )


def test_backup_rules_belong_to_computer_operations() -> None:
    owners = {rule["owner"] for file, rule in RULES if file == "backup.yaml"}
    assert owners == {"computer-operations"}
