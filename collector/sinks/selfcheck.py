"""The help desks' self-check: read-only probes of each configured sink, each problem with its fix.

`runwatch outbox check-sinks` prints it; the collector runs it once at start and logs it, so
that a wrong token, queue or permission shows before the first ticket fails.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from collector.sinks.contract import Problem, SinkError

log = logging.getLogger(__name__)


def check_sinks(sinks: Mapping[str, Any]) -> dict[str, list[Problem]]:
    """Sink name -> the problems its self-check found (none for a sink without one)."""
    found: dict[str, list[Problem]] = {}
    for name, sink in sinks.items():
        check = getattr(sink, "check", None)
        if check is None:
            found[name] = []
            continue
        try:
            found[name] = list(check())
        except SinkError as exc:
            found[name] = [Problem(str(exc), "see the help desk's page in the docs")]
        except Exception as exc:  # a probe must never stop the collector
            log.exception("sink %s: the self-check failed", name)
            found[name] = [Problem(f"the self-check failed: {exc!r}", "report this as a bug")]
    return found


def log_problems(found: Mapping[str, list[Problem]]) -> None:
    """Log one line per problem (or that a sink passed), naming the sink and the fix."""
    for name, problems in found.items():
        if not problems:
            log.info("sink %s: self-check passed", name)
        for problem in problems:
            level = logging.ERROR if problem.severity == "error" else logging.WARNING
            log.log(level, "sink %s: %s; fix: %s", name, problem.what, problem.fix)


def as_json(found: Mapping[str, list[Problem]]) -> dict[str, Any]:
    """The self-check's result as JSON: per sink, ok and its problems."""
    return {
        name: {
            "ok": not any(p.severity == "error" for p in problems),
            "problems": [{"severity": p.severity, "what": p.what, "fix": p.fix} for p in problems],
        }
        for name, problems in found.items()
    }


def check_and_log(sinks: Mapping[str, Any]) -> dict[str, list[Problem]]:
    """Run the self-check and log what it found (the collector does this once at start)."""
    found = check_sinks(sinks)
    log_problems(found)
    return found
