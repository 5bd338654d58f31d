"""A collector config for tests: two groups, the filesystem rule, and whatever a test adds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
