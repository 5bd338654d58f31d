"""Threshold overrides: which host groups a host belongs to, and the thresholds that follow.

Precedence, from weakest to strongest:
1. the rule's own thresholds (`rules:` or a rule file);
2. the first host group, in config order, that the host belongs to and that names the rule
   under `thresholds`. Its keys replace the rule's; keys it leaves out stay the rule's.
Later groups that also match are not merged in: one place decides, so `rules explain` can
name it.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from collector.config import CollectorConfig, HostGroupConfig, RuleConfig, apply_override


def group_matches(group: HostGroupConfig, host: str, labels: dict[str, str]) -> tuple[bool, str]:
    """Whether the host belongs to the group, and why (or why not) in words."""
    if group.hosts:
        hit = next((p for p in group.hosts if fnmatch.fnmatchcase(host, p)), None)
        if hit is None:
            return False, f"the host name matches none of {', '.join(group.hosts)}"
        why = [f"the host name matches {hit!r}"]
    else:
        why = []
    for key, pattern in group.labels.items():
        value = labels.get(key)
        if value is None:
            return False, f"the agent has no label {key!r}"
        if not fnmatch.fnmatchcase(value, pattern):
            return False, f"the agent's label {key}={value} does not match {pattern!r}"
        why.append(f"the agent's label {key}={value} matches {pattern!r}")
    return True, " and ".join(why)


@dataclass(frozen=True, slots=True)
class GroupVerdict:
    """One host group as seen from one (host, rule)."""

    group: str
    member: bool
    why: str
    overrides_rule: bool
    applies: bool


@dataclass(frozen=True, slots=True)
class Explanation:
    """Which thresholds apply to a rule on a host, and why."""

    rule: RuleConfig  # as written
    effective: RuleConfig  # after overrides
    source: str  # "rule" or "host_groups -> N (NAME)"
    groups: tuple[GroupVerdict, ...]


class ThresholdResolver:
    """The effective rule for each (rule, host), cached until the host's labels change."""

    def __init__(self, config: CollectorConfig) -> None:
        self._groups = config.host_groups
        self._cache: dict[tuple[str, str], RuleConfig] = {}
        self._labels: dict[str, dict[str, str]] = {}

    def effective(self, rule: RuleConfig, host: str, labels: dict[str, str]) -> RuleConfig:
        """The rule as it applies to this host."""
        if not self._groups:
            return rule
        if self._labels.get(host) != labels:
            self._labels[host] = dict(labels)
            for key in [k for k in self._cache if k[1] == host]:
                del self._cache[key]
        found = self._cache.get((rule.name, host))
        if found is None:
            found = self._cache[(rule.name, host)] = self.explain(rule, host, labels).effective
        return found

    def explain(self, rule: RuleConfig, host: str, labels: dict[str, str]) -> Explanation:
        """Go through the host groups in order; the first member that overrides the rule wins."""
        verdicts: list[GroupVerdict] = []
        effective, source = rule, "rule"
        for index, group in enumerate(self._groups, start=1):
            member, why = group_matches(group, host, labels)
            override = group.thresholds.get(rule.name)
            applies = member and override is not None and source == "rule"
            if applies:
                assert override is not None
                effective = apply_override(rule, override)
                source = f"host_groups -> {index} ({group.name})"
            verdicts.append(GroupVerdict(group.name, member, why, override is not None, applies))
        return Explanation(rule, effective, source, tuple(verdicts))
