"""Services on /metrics: each service's state as a state set, and what it is (title, owner)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from collector.metrics.exposition import PREFIX, _escape, _head
from collector.services.state import ServiceState

if TYPE_CHECKING:
    from collector.services.watch import ServiceWatch

_LINES = {
    current: "".join(
        f'{PREFIX}service_state\x00,state="{state.word}"}} {"1.0" if state is current else "0.0"}\n'
        for state in ServiceState
    )
    for current in ServiceState
}


def render_service_states(out: list[str], watch: ServiceWatch | None) -> None:
    """`runwatch_service_state{service, state}`: 1 for the service's current state, 0 for the
    other three (as `runwatch_host_state`), and `runwatch_service_info`. The families are
    declared even with no services, so a measurement can never take their names."""
    _head(
        out,
        f"{PREFIX}service_state",
        "gauge",
        "A service's state: 1 for the current one (operational, maintenance, degraded, outage).",
    )
    model = watch.model if watch is not None else None
    statuses = watch.statuses if watch is not None else {}
    services = sorted(model.services, key=lambda s: s.name) if model is not None else []
    for service in services:
        status = statuses.get(service.name)
        if status is not None:
            label = f'{{service="{_escape(service.name)}"'
            out.append(_LINES[status.state].replace("\x00", label))
    _head(
        out,
        f"{PREFIX}service_info",
        "gauge",
        "Each service's title, owner group and whether it is public; join on `service`.",
    )
    for service in services:
        out.append(
            f'{PREFIX}service_info{{service="{_escape(service.name)}",'
            f'title="{_escape(service.title)}",owner="{_escape(service.owner)}",'
            f'public="{"true" if service.public else "false"}"}} 1.0\n'
        )
