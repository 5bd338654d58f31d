"""Sink types by name: the config each takes, and how to build the adapter."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from collector.sinks.contract import Sink


def sink_type(config: Any) -> str:
    """The `type:` a sink config was written with (its msgspec tag)."""
    return str(config.__struct_config__.tag)


def _adapters() -> dict[str, Callable[..., Sink]]:
    # Imported here, not at module level: a collector with only the built-in register loads
    # no HTTP client at all.
    from collector.sinks import jira, redmine, rt, servicenow, webhook, zammad

    return {
        "redmine": redmine.RedmineSink,
        "rt": rt.RTSink,
        "jira": jira.JiraSink,
        "servicenow": servicenow.ServiceNowSink,
        "zammad": zammad.ZammadSink,
        "webhook": webhook.WebhookSink,
    }


def build_sinks(configs: Mapping[str, Any]) -> dict[str, Sink]:
    """Build an adapter for every configured sink that is not the built-in register."""
    external = {name: config for name, config in configs.items() if sink_type(config) != "builtin"}
    if not external:
        return {}
    adapters = _adapters()
    return {name: adapters[sink_type(config)](config) for name, config in external.items()}


def priority_map(config: Any) -> Callable[[str], str]:
    """Severity -> the sink's priority value: its `priorities` option over its defaults."""
    priorities: Mapping[str, str] = (
        getattr(config, "priority_values", None) or getattr(config, "priorities", None) or {}
    )

    def lookup(severity: str) -> str:
        return priorities.get(severity, "")

    return lookup
