"""A collector config for tests: two groups, the filesystem rule, and whatever a test adds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from collector.config import collector_config_from_dict

GROUPS = {
    "systems-administration": {
        "sink": "helpdesk",
        "assign": "Systems Administration",
        "reopen_within": "1h",
    },
    "computer-operations": {
        "sink": "helpdesk",
        "assign": "Computer Operations",
        "on_recovery": "comment",
    },
}

# The same two groups with response targets, for the service-level reports and the console.
TIMED_GROUPS = {
    "systems-administration": {
        "sink": "helpdesk",
        "assign": "Systems Administration",
        "respond_within": "4h",
    },
    "computer-operations": {
        "sink": "helpdesk",
        "assign": "Computer Operations",
        "respond_within": "1h",
    },
}

FS_RULE = {
    "name": "filesystem_full",
    "metric": "fs_used_ratio",
    "warning": 0.85,
    "critical": 0.95,
    "clear": 0.80,
    "for": "5m",
    "owner": "systems-administration",
}


def collector_config(
    tmp_path: Path, rules: list[dict[str, Any]] | None = None, **extra: Any
) -> Any:
    data: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "sinks": {"helpdesk": {"type": "builtin"}},
        "groups": GROUPS,
        "rules": [FS_RULE] if rules is None else rules,
        "staleness": {"after_intervals": 3, "owner": "systems-administration"},
        # The name Litestar's TestClient sends in its Host header.
        "allowed_hosts": ["testserver.local"],
    }
    data.update(extra)
    return collector_config_from_dict(data)


def write_collector_yaml(
    path: Path, data_dir: Path, groups: dict[str, Any], **settings: Any
) -> Path:
    """Write a config for a `runwatch collector` process: a free loopback port, the built-in
    help desk for `groups`, and `settings`."""
    data = {
        "listen": "127.0.0.1:0",
        "data_dir": str(data_dir),
        "sinks": {"helpdesk": {"type": "builtin"}},
        "groups": groups,
        **settings,
    }
    path.write_text(yaml.safe_dump(data))
    return path
