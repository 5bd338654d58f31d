"""The agent's configuration: where to report, as which host, and which checks to run."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import msgspec

from checks.registry import CHECK_TYPES, AnyCheckOptions
from checks.schema import HostName, LabelName, LabelValue
from checks.settings import ConfigError, Duration, convert, field_error, load_yaml, resolve_paths

# The check name of the agent's own measurements (RSS, CPU, spool): no configured check may use it.
SELF_CHECK = "agent"


class _Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class CollectorTarget(_Config, frozen=True):
    url: str
    token_file: Path | None = None
    ca_file: Path | None = None
    timeout: Duration = Duration(10)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise field_error("url", f"must start with http:// or https://, got {self.url!r}")


class SpoolConfig(_Config, frozen=True):
    max_bytes: Annotated[int, msgspec.Meta(ge=65536)] = 64 * 1024 * 1024
    max_reports: Annotated[int, msgspec.Meta(ge=10)] = 20_000
    max_age: Duration = Duration(7 * 86400)
    # After an outage: at most this many reports a second, starting after a random delay of up
    # to replay_jitter, so a fleet whose collector comes back does not arrive all at once.
    replay_rate: Annotated[float, msgspec.Meta(gt=0)] = 20.0
    replay_jitter: Duration = Duration(10)

    def __post_init__(self) -> None:
        if float(self.max_age) < 60:
            raise field_error("max_age", "must be at least 1m; older reports are dropped")


class AgentMetricsConfig(_Config, frozen=True):
    """A local /metrics for direct Prometheus scraping; off unless this section is given."""

    listen: str = "127.0.0.1:9331"

    def __post_init__(self) -> None:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
            raise field_error(
                "listen", f"expected HOST:PORT such as 127.0.0.1:9331, got {self.listen!r}"
            )


class AgentConfig(_Config, frozen=True):
    collector: CollectorTarget
    host: HostName | None = None
    labels: dict[LabelName, LabelValue] = {}  # the host's labels: the collector's host groups
    interval: Duration = Duration(60)
    state_dir: Path = Path("/var/lib/runwatch-agent")
    checks: list[AnyCheckOptions] = []
    spool: SpoolConfig = SpoolConfig()
    metrics: AgentMetricsConfig | None = None

    def __post_init__(self) -> None:
        if float(self.interval) < 1:
            raise field_error("interval", "must be at least 1s")

    @property
    def host_name(self) -> str:
        return self.host or socket.gethostname()

    @property
    def token_path(self) -> Path | None:
        return self.collector.token_file


def _validate(config: AgentConfig, source: str | None) -> AgentConfig:
    seen: dict[str, int] = {}
    for index, check in enumerate(config.checks, start=1):
        if check.instance == SELF_CHECK:
            raise ConfigError(
                f"checks -> {index} -> name",
                f"{SELF_CHECK!r} is the agent's own figures; give this check another `name`",
                source=source,
            )
        if check.instance in seen:
            raise ConfigError(
                f"checks -> {index} -> name",
                f"check name {check.instance!r} is already used by checks -> "
                f"{seen[check.instance]}; give one of them a distinct `name`",
                source=source,
            )
        seen[check.instance] = index
        if check.interval is not None and float(check.interval) < 1:
            raise ConfigError(
                f"checks -> {index} -> interval", "must be at least 1s", source=source
            )
        if check.timeout is not None and float(check.timeout) <= 0:
            raise ConfigError(
                f"checks -> {index} -> timeout", "must be more than 0s", source=source
            )
    return config


def load_agent_config(
    path: Path,
    overrides: dict[str, Any] | None = None,
    *,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> AgentConfig:
    """Load and validate an agent config; relative paths are relative to the file (`edit`: see
    checks.settings.load_yaml)."""
    base = path.parent.resolve()

    def prepare(data: dict[str, Any]) -> None:
        data.update(overrides or {})
        resolve_paths(base, data, "state_dir")
        resolve_paths(base, data.get("collector"), "token_file", "ca_file")

    try:
        config = load_yaml(path, AgentConfig, defaults=prepare, edit=edit)
    except ConfigError as exc:
        raise _with_known_types(exc) from None
    return _validate(config, str(path))


def _with_known_types(exc: ConfigError) -> ConfigError:
    """Add the list of check types to an unknown-type error."""
    if (
        exc.path.startswith("checks -> ")
        and exc.path.endswith("-> type")
        and exc.message.startswith("Invalid value")
    ):
        known = ", ".join(sorted(CHECK_TYPES))
        return ConfigError(
            exc.path, f"{exc.message}; known check types: {known}", source=exc.source
        )
    return exc


def agent_config_from_dict(data: dict[str, Any]) -> AgentConfig:
    """Validate an agent config given as data (tests, `runwatch up`)."""
    try:
        config = convert(data, AgentConfig)
    except ConfigError as exc:
        raise _with_known_types(exc) from None
    return _validate(config, None)
