"""Sink types by name: the config each takes, and how to build the adapter."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from collector.sinks.base import Sink

# type name -> (config class, adapter class); the built-in register has no adapter.
SINK_TYPES: dict[str, tuple[type, Callable[..., Sink]]] = {}


def build_sinks(configs: Mapping[str, Any]) -> dict[str, Sink]:
    """Build an adapter for every configured sink that is not the built-in register."""
    sinks: dict[str, Sink] = {}
    for name, config in configs.items():
        if config.type == "builtin":
            continue
        _, adapter = SINK_TYPES[config.type]
        sinks[name] = adapter(config)
    return sinks


def priority_map(config: Any) -> Callable[[str], str]:
    """Severity -> the sink's priority value, from the sink's `priorities` option."""
    priorities: Mapping[str, str] = getattr(config, "priorities", {}) or {}

    def lookup(severity: str) -> str:
        return priorities.get(severity, "")

    return lookup
