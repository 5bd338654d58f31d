"""`runwatch rules list|explain`: the rules the collector applies, and which thresholds of one
apply to a host, and why."""

from __future__ import annotations

import argparse
import json
from typing import Any

from runwatch.cli.common import (
    EXIT_OK,
    add_collector_options,
    add_command,
    add_group,
    collector_get,
    when,
)


def cmd_rules(args: argparse.Namespace) -> int:
    """Ask the collector which thresholds of RULE apply to HOST: the rule's own, or a host group's
    (the first matching group that names the rule wins), and what else governs its calls (flapping,
    maintenance, parents)."""
    import urllib.parse

    path = f"/api/v1/rules/{urllib.parse.quote(args.rule, safe='')}/explain"
    found = collector_get(args.collector, path, {"host": args.host})
    if args.json:
        print(json.dumps(found, indent=2))
        return EXIT_OK
    print(_explanation_text(found))
    return EXIT_OK


def _explanation_text(found: dict[str, Any]) -> str:
    from runwatch import units

    # A forecast's thresholds are times left; otherwise the metric's name says its unit.
    unit = "seconds" if found["forecast"] else ""

    def read(value: float | None) -> str:
        return "-" if value is None else units.value(value, unit, found["metric"])

    def thresholds(t: dict[str, Any]) -> str:
        left = " (time left)" if found["forecast"] else ""
        return (
            f"warning {read(t['warning'])}, critical {read(t['critical'])}, "
            f"clear {read(t['clear'])}, for {units.duration(t['for'])}, "
            f"direction {t['direction']}{left}"
        )

    lines = [
        f"rule {found['rule']} (metric {found['metric']}, owner {found['owner']}) on host "
        f"{found['host']}" + ("" if found["host_known"] else " (not reported yet)")
    ]
    labels = ", ".join(f"{k}={v}" for k, v in sorted(found["host_labels"].items()))
    lines.append(f"  agent labels: {labels or 'none'}")
    lines.append(f"  the rule says:     {thresholds(found['rule_thresholds'])}")
    for group in found["host_groups"]:
        if group["applies"]:
            verdict = "APPLIES"
        elif group["member"] and group["overrides_rule"]:
            verdict = "member, but an earlier group already decided"
        elif group["member"]:
            verdict = "member, sets nothing for this rule"
        else:
            verdict = "not a member"
        lines.append(f"  host group {group['name']}: {verdict} ({group['why']})")
    lines.append(f"  in force:          {thresholds(found['effective_thresholds'])}")
    lines.append(f"  decided by:        {found['source']}")
    if found["forecast"]:
        lines.append(
            f"  forecast:          time until {found['metric']} reaches "
            f"{units.value(found['forecast']['reaches'], '', found['metric'])}, fitted over "
            f"{units.duration(found['forecast']['over'])}"
        )
    flap = found["flapping"]
    lines.append(
        "  flapping:          "
        + (
            f"more than {flap['changes']} changes within {units.duration(flap['window'])} "
            f"(from the {flap['source']})"
            if flap["enabled"]
            else "off"
        )
    )
    for window in found["maintenance"]:
        lines.append(
            f"  maintenance:       {window['source']} until {when(window['ends_at'])} "
            f"by {window['created_by']}: {window['reason']}"
        )
    if found["parents"]:
        lines.append(f"  parents:           {', '.join(found['parents'])}")
    for state in found["states"]:
        where = ",".join(f"{k}={v}" for k, v in sorted(state["labels"].items()))
        extra = "".join(f" {word}" for word in ("flapping", "silenced") if state[word])
        call = f" call {state['call_id']}" if state["call_id"] else ""
        value = f" at {read(state['value'])}" if state.get("value") is not None else ""
        lines.append(f"  now: {where or '-'} {state['state']}{value}{extra}{call}")
    return "\n".join(lines)


def cmd_rules_list(args: argparse.Namespace) -> int:
    """List the rules a collector applies: metric, owner group, thresholds in the metric's unit
    (a forecast's as time left), `for`, and how many of their series are problems now."""
    from runwatch import units
    from runwatch.cli.output import Column, print_json, print_table

    rules = collector_get(args.collector, "/api/v1/rules")
    if args.json:
        return print_json(rules)

    def read(rule: dict[str, Any], key: str) -> str:
        value = rule.get(key)
        if value is None:
            return "-"
        op = ">=" if rule["direction"] == "above" else "<="
        return f"{op} {units.value(value, rule.get('unit', ''), rule['metric'])}"

    def problems(rule: dict[str, Any]) -> str:
        found = rule.get("problems") or {}
        return ", ".join(f"{n} {s}" for s, n in sorted(found.items())) or "-"

    columns = [
        Column("rule", lambda r: r["name"]),
        Column("metric", lambda r: r["metric"]),
        Column("owner", lambda r: r["owner"]),
        Column("warning", lambda r: read(r, "warning")),
        Column("critical", lambda r: read(r, "critical")),
        Column("for", lambda r: units.duration(r["for"])),
        Column("problems now", problems),
    ]
    print_table(rules, columns, empty="no rules are configured")
    return EXIT_OK


def register(sub: Any) -> None:
    rule_actions = add_group(sub, "rules", "look at rules as the collector applies them")
    listing = add_command(
        rule_actions,
        "list",
        cmd_rules_list,
        "list the rules: metric, owner, thresholds, and their problems now",
    )
    add_collector_options(listing)
    explain = add_command(
        rule_actions,
        "explain",
        cmd_rules,
        "show which thresholds apply to a rule on a host, and why",
    )
    explain.add_argument("host")
    explain.add_argument("rule")
    add_collector_options(explain)
