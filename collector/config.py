"""The collector's configuration: listen address, storage, agents, sinks, run groups and rules."""

from __future__ import annotations

import glob
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import jinja2
import msgspec

from checks.schema import MetricName
from checks.settings import ConfigError, Duration, convert, field_error, load_yaml, resolve_paths
from collector.access import beyond_loopback, url_host
from collector.notify.config import (
    NotifyConfig,
    prevalidate_notify,
    resolve_notify_paths,
    validate_notify,
)
from collector.services.calendar import CalendarConfig, check_calendars
from collector.services.config import ServiceConfig, StatusPageConfig, check_services
from collector.services.targets import OlaConfig, check_targets, prevalidate_targets
from collector.sinks.jira import JiraSinkConfig
from collector.sinks.redmine import RedmineSinkConfig
from collector.sinks.rt import RTSinkConfig
from collector.sinks.servicenow import ServiceNowSinkConfig
from collector.sinks.webhook import WebhookSinkConfig
from collector.sinks.zammad import ZammadSinkConfig

RuleName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]*$", max_length=100)]
GroupName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_-]*$", max_length=100)]

# The staleness rule is built in: it watches hosts, not a metric.
STALE_RULE = "host_stale"
# Umbrella calls of storm control carry this rule name.
STORM_RULE = "call_storm"
# Per-check staleness is built in too: one check stopped reporting while its host reports.
CHECK_STALE_RULE = "check_stale"
# A service's own call, for its owner group, when it is out (collector/incidents/service_calls.py).
SERVICE_RULE = "service_level"
BUILTIN_RULES = (STALE_RULE, STORM_RULE, CHECK_STALE_RULE, SERVICE_RULE)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class GroupConfig(_Config, frozen=True):
    """A run group: where its calls go and how they are handled."""

    sink: str
    assign: str
    respond_within: Duration = Duration(4 * 3600)
    reopen_within: Duration = Duration(3600)  # a recurrence inside this reopens the same call
    on_recovery: Literal["resolve", "close", "comment"] = "resolve"
    # The help desk closed a call while the problem persists: reopen it at once, or leave it
    # closed and open a new call if the problem still holds `new_call_after` later.
    on_desk_close: Literal["reopen", "new_call"] = "reopen"
    new_call_after: Duration = Duration(1800)
    # With `on_desk_close: reopen`, a second close in the desk in one problem's life: reopen
    # again, leave the ticket closed and open a new call after `new_call_after` if the problem
    # still holds, or leave it closed (the call stays open here until the problem clears).
    on_repeated_close: Literal["keep_reopening", "open_new", "leave_closed"] = "open_new"
    # Where calls go in the group's sink: project, tracker, assignee (Redmine), queue, owner
    # (RT), project, component (Jira), assignment_group (ServiceNow), group (Zammad).
    route: dict[str, str] = {}
    # The group's operational level agreement: response and resolution targets per severity,
    # counted in a calendar's business hours (collector/services/targets.py). `respond_within`
    # stays the escalation: around the clock, for every severity.
    ola: OlaConfig | None = None


class FlappingConfig(_Config, frozen=True):
    """A rule flaps when its state changes more than `changes` times within `window`."""

    enabled: bool = True
    changes: Annotated[int, msgspec.Meta(ge=1)] = 5
    window: Duration = Duration(1800)

    def __post_init__(self) -> None:
        if float(self.window) <= 0:
            raise field_error("window", "must be more than 0s")


class ForecastConfig(_Config, frozen=True):
    """Predict when the metric reaches `reaches`, by a linear fit over the last `over`.

    The thresholds are times: a call when the predicted time is within `warning` (or
    `critical`); back to OK only once it is beyond `clear` (default: `warning`).
    """

    reaches: float = 0.0
    over: Duration = Duration(6 * 3600)
    warning: Duration | None = None
    critical: Duration | None = None
    clear: Duration | None = None
    min_points: Annotated[int, msgspec.Meta(ge=3)] = 4

    def __post_init__(self) -> None:
        if self.warning is None and self.critical is None:
            raise ValueError("a forecast needs a warning or a critical time, such as 3d")
        if float(self.over) < 60:
            raise field_error("over", "must be at least 1m")
        if (
            self.warning is not None
            and self.critical is not None
            and float(self.critical) >= float(self.warning)
        ):
            raise field_error("critical", f"must be shorter than warning ({self.warning})")
        first = self.warning if self.warning is not None else self.critical
        assert first is not None
        if self.clear is not None and float(self.clear) < float(first):
            raise field_error("clear", f"must not be shorter than {first}")


class RuleConfig(_Config, frozen=True):
    """A threshold on one metric, owned by exactly one run group."""

    name: RuleName
    metric: MetricName
    owner: GroupName
    match: dict[str, str] = {}  # label -> fnmatch glob; a series must match all of them
    direction: Literal["above", "below"] = "above"
    warning: float | None = None
    critical: float | None = None
    clear: float | None = None  # hysteresis: back to OK only past this; defaults to warning
    for_: Duration = msgspec.field(default=Duration(0), name="for")
    description: str = ""
    runbook: str = ""
    unknown: Literal["call", "ignore"] = "call"  # what a failing check means for this rule
    flapping: FlappingConfig | None = None  # default: the collector's `flapping`
    # A forecast rule judges the time until the metric reaches a value, not the value itself.
    forecast: ForecastConfig | None = None

    def __post_init__(self) -> None:
        if self.forecast is not None:
            return  # its thresholds are times, checked by ForecastConfig and set at load
        if self.warning is None and self.critical is None:
            raise ValueError("a rule needs a warning or a critical threshold")
        above = self.direction == "above"

        def beyond(a: float, b: float) -> bool:
            return a < b if above else a > b

        word = "below" if above else "above"
        if (
            self.warning is not None
            and self.critical is not None
            and not beyond(self.warning, self.critical)
        ):
            raise field_error(
                "warning",
                f"must be {word} critical ({self.critical:g}) for "
                f"direction {self.direction}, got {self.warning:g}",
            )
        first = self.first_threshold
        if self.clear is not None and beyond(first, self.clear):
            raise field_error(
                "clear",
                f"must not be past the first threshold ({first:g}) for "
                f"direction {self.direction}, got {self.clear:g}",
            )

    @property
    def first_threshold(self) -> float:
        """The threshold a value crosses first: warning if set, else critical."""
        value = self.warning if self.warning is not None else self.critical
        assert value is not None
        return value

    @property
    def clear_threshold(self) -> float:
        return self.clear if self.clear is not None else self.first_threshold


class ThresholdOverride(_Config, frozen=True):
    """A host group's own thresholds for one rule; what it leaves out comes from the rule.

    For a forecast rule the values are times (`2d`); for other rules, numbers.
    """

    warning: float | str | None = None
    critical: float | str | None = None
    clear: float | str | None = None
    for_: Duration | None = msgspec.field(default=None, name="for")


class HostGroupConfig(_Config, frozen=True):
    """Hosts chosen by name globs and/or agent labels, with their own thresholds.

    A host belongs when any of `hosts` matches its name (or `hosts` is empty) and every one of
    `labels` matches the agent's label of that name (globs).
    """

    name: GroupName
    hosts: list[str] = []
    labels: dict[str, str] = {}
    thresholds: dict[RuleName, ThresholdOverride] = {}

    def __post_init__(self) -> None:
        if not self.hosts and not self.labels:
            raise ValueError("a host group needs `hosts` (name globs) or `labels`")


class WeeklyWindow(_Config, frozen=True):
    """A maintenance window that recurs every week: on `days`, from `start` for `duration`."""

    days: Annotated[
        list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]], msgspec.Meta(min_length=1)
    ]
    start: Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
    duration: Duration

    def __post_init__(self) -> None:
        if not 0 < float(self.duration) <= 7 * 86400:
            raise field_error("duration", "must be more than 0s and at most 1w")

    @property
    def start_seconds(self) -> int:
        hours, minutes = self.start.split(":")
        return int(hours) * 3600 + int(minutes) * 60


class MaintenanceConfig(_Config, frozen=True):
    """A recurring maintenance window: calls of matching hosts and rules are held back."""

    name: str
    weekly: Annotated[list[WeeklyWindow], msgspec.Meta(min_length=1)]
    hosts: str = "*"  # glob on the host name
    rules: str = "*"  # glob on the rule name
    timezone: str = "UTC"
    reason: str = ""

    def __post_init__(self) -> None:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise field_error(
                "timezone",
                f"unknown time zone {self.timezone!r} (use a name such as Europe/Berlin)",
            ) from None


class HistoryConfig(_Config, frozen=True):
    """History the collector keeps: one point per series per `resolution`, for `retention`.

    Forecasts keep the series they watch. With `graphs` (the default), every ruled series
    (one that some rule evaluates) is kept too, for the console's graphs: each step's mean,
    lowest and highest value.
    """

    resolution: Duration = Duration(300)
    retention: Duration = Duration(7 * 86400)
    graphs: bool = True

    def __post_init__(self) -> None:
        if float(self.resolution) < 1:
            raise field_error("resolution", "must be at least 1s")
        if float(self.retention) < float(self.resolution):
            raise field_error("retention", "must be at least the resolution")


class SilencesConfig(_Config, frozen=True):
    """Operators' silences: a silence whose host glob matches more than `confirm_over` of the
    fleet's hosts (a share, 0.2 = 20 %) is saved only with a second confirmation. 0: every
    silence that matches a host asks; 1: none does."""

    confirm_over: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.confirm_over <= 1:
            raise field_error(
                "confirm_over", f"must be a share from 0 to 1 (0.2 = 20 %), got {self.confirm_over}"
            )


class BuiltinSinkConfig(_Config, frozen=True, tag_field="type", tag="builtin"):
    """The built-in call register in the collector's own store."""

    @property
    def type(self) -> str:
        return "builtin"


SinkConfig = (
    BuiltinSinkConfig
    | RedmineSinkConfig
    | RTSinkConfig
    | JiraSinkConfig
    | ServiceNowSinkConfig
    | ZammadSinkConfig
    | WebhookSinkConfig
)
SINK_TYPES = ("builtin", "redmine", "rt", "jira", "servicenow", "zammad", "webhook")


class AgentsConfig(_Config, frozen=True):
    tokens_file: Path | None = None  # default: DATA_DIR/agents.tokens


class OperatorsConfig(_Config, frozen=True):
    """Operator tokens: they may enrol and revoke agent tokens through the API (`deploy`),
    set silences and handle calls; a read-only one sees everything and changes nothing.
    Console users sign in with a name and password from `users_file`."""

    tokens_file: Path | None = None  # default: DATA_DIR/operators.tokens
    users_file: Path | None = None  # default: DATA_DIR/users
    # The read API (hosts, calls, outbox, silences, rule explanations): `open` to anyone who
    # reaches the collector, or `token`: an operator token of either role. Unset: `token`
    # when the collector is reachable beyond loopback (`listen`, `external_url`), else `open`;
    # set at load, so it is never None after.
    read_api: Literal["open", "token"] | None = None
    # /metrics, by the same rule: Prometheus then sends an operator token (a read-only one is
    # enough) as Bearer credentials, or as the password of Basic ones.
    metrics: Literal["open", "token"] | None = None
    session_hours: Annotated[float, msgspec.Meta(gt=0, le=24 * 30)] = 12.0


class StalenessConfig(_Config, frozen=True):
    """A host is STALE when it has sent nothing for `after_intervals` of its own interval."""

    after_intervals: Annotated[float, msgspec.Meta(ge=1)] = 3
    owner: GroupName | None = None  # who gets the call; no call when unset
    for_: Duration = msgspec.field(default=Duration(0), name="for")
    # Per check, too: one check silent for `after_intervals` of its own interval while the
    # host still reports. A check silent for `forget_checks_after` is forgotten (removed from
    # the agent's config), and its call resolved.
    checks: bool = True
    forget_checks_after: Duration = Duration(86400)


class OutboxConfig(_Config, frozen=True):
    """Retries of deliveries to help desks: exponential backoff with jitter, capped."""

    first_retry: Duration = Duration(2)
    max_retry: Duration = Duration(600)
    # PostgreSQL: how long a replica keeps the operations it claimed before others may take
    # them over (what happens to the claims of a replica that died).
    lease: Duration = Duration(60)

    def __post_init__(self) -> None:
        if float(self.lease) < 1:
            raise field_error("lease", f"must be at least 1s, got {float(self.lease):g}s")


class StormConfig(_Config, frozen=True):
    """At most `max_calls` new calls per sink within `window`; past that, one umbrella call
    per owner group lists the problems held back (a switch fails: 200 hosts go STALE)."""

    max_calls: Annotated[int, msgspec.Meta(ge=1)] = 50
    window: Duration = Duration(300)
    # The umbrella's ticket is brought up to date (count, list) at most this often.
    update_every: Duration = Duration(5)


class TemplatesConfig(_Config, frozen=True):
    """Jinja2 templates for a call's summary and description (defaults:
    collector/incidents/templates.py)."""

    summary: str | None = None
    description: str | None = None

    def __post_init__(self) -> None:
        for name in ("summary", "description"):
            _check_template(name, getattr(self, name))


def _check_template(name: str, text: str | None) -> None:
    if text is None:
        return
    from collector.incidents.templates import compile_template

    try:
        compile_template(text)
    except jinja2.TemplateSyntaxError as exc:
        raise field_error(name, f"template error at line {exc.lineno}: {exc.message}") from None


class MetricsConfig(_Config, frozen=True):
    measurements: bool = True  # expose every measurement as a gauge (switch off for huge fleets)


class TlsConfig(_Config, frozen=True):
    """Serve HTTPS with this certificate (PEM, chain after it) and its unencrypted key (PEM)."""

    cert_file: Path
    key_file: Path


class ServerConfig(_Config, frozen=True):
    """The HTTP server underneath the API (uvicorn): its HTTP parser and its event loop.

    `auto` takes the C implementations (httptools, uvloop) when they are installed, which
    cost some 15-22 % less CPU per report than the pure-Python ones (h11, asyncio; see
    bench/README.md), and falls back to those when not. Naming one that is not installed is
    refused at load.
    """

    http: Literal["auto", "httptools", "h11"] = "auto"
    loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    # A WARNING names the code that held the event loop for longer than this (reports waited
    # meanwhile; collector/api/stalls.py); 0s: not watched.
    stall_warning: Duration = Duration(0.5)


class LimitsConfig(_Config, frozen=True):
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 4 * 1024 * 1024
    max_measurements: Annotated[int, msgspec.Meta(ge=1)] = 20_000
    # Token buckets, one per agent host and one per operator; 0 requests a second: no limit.
    # An agent reports about once a minute. The burst lets a day's spool (1,440 reports at
    # 60 s) replay after an outage at the agent's replay_rate for its first 600, and the rest
    # at 2 a second; a 429 tells the agent when to come back (Retry-After).
    agent_requests_per_second: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    agent_burst_requests: Annotated[int, msgspec.Meta(ge=1)] = 600
    operator_requests_per_second: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    operator_burst_requests: Annotated[int, msgspec.Meta(ge=1)] = 60
    # Slow clients (collector/api/connections.py): a request's headers and its body must each
    # arrive within these, or the connection is closed. Connections past max_connections get
    # a 503 at once (agents report on short connections: 10,000 a minute hold a few dozen).
    header_timeout: Duration = Duration(10)
    body_timeout: Duration = Duration(30)
    keep_alive_timeout: Duration = Duration(5)  # an idle kept-alive connection is closed
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 4096
    # Failed authentications per client address (unknown or revoked bearer tokens, failed
    # console sign-ins): a burst of 20, then one every 20 s. An address past that is refused
    # (429) whatever it sends until its bucket refills; an agent retrying a revoked token at
    # its backoff never gets there. 0: no limit.
    address_failures_per_second: Annotated[float, msgspec.Meta(ge=0)] = 0.05
    address_burst_failures: Annotated[int, msgspec.Meta(ge=1)] = 20
    # Console sign-ins per user name, counted before the password is checked: 10 at once,
    # then one every 50 s. A successful sign-in fills the name's bucket again. 0: no limit.
    signin_attempts_per_second: Annotated[float, msgspec.Meta(ge=0)] = 0.02
    signin_burst_attempts: Annotated[int, msgspec.Meta(ge=1)] = 10
    # Password checks (PBKDF2, a quarter of a second of a core each) run at once, and how many
    # more may wait for one; sign-ins past that get 429 rather than a place in a long line.
    password_checks_at_once: Annotated[int, msgspec.Meta(ge=1)] = 1
    password_checks_waiting: Annotated[int, msgspec.Meta(ge=0)] = 4
    # Series (host, metric, labels) the collector holds, stores and exposes: per host, and in
    # all. New series past either limit are dropped and counted, and the agent is told; a
    # host's known series are always updated. A series costs about 1 KiB of memory.
    max_series_per_host: Annotated[int, msgspec.Meta(ge=1)] = 5_000
    max_series: Annotated[int, msgspec.Meta(ge=1)] = 1_000_000
    # Check names a host may have (each a status kept, stored and exposed), likewise.
    max_checks_per_host: Annotated[int, msgspec.Meta(ge=1)] = 500
    # The longest report interval believed: staleness and the pruning of series that are no
    # longer reported go by at most this.
    max_interval: Duration = Duration(86400)

    def __post_init__(self) -> None:
        if float(self.max_interval) < 1:
            raise field_error("max_interval", "must be at least 1s")


class StoreConfig(_Config, frozen=True):
    """Where the collector keeps its state: one SQLite file (the default), or PostgreSQL, which
    several collector replicas can share."""

    backend: Literal["sqlite", "postgresql"] = "sqlite"
    # postgresql: a libpq connection string or URL ("host=db1 dbname=runwatch user=runwatch",
    # "postgresql://runwatch@db1/runwatch"); put the password in ~/.pgpass or PGPASSFILE.
    dsn: str | None = None
    # sqlite: refuse writes that would grow the database file past this many bytes (reports
    # then get 503 and stay in the agents' spools); unset: as far as the disk goes.
    max_bytes: Annotated[int, msgspec.Meta(ge=65536)] | None = None

    def __post_init__(self) -> None:
        if self.backend == "postgresql" and self.max_bytes is not None:
            raise field_error("max_bytes", "is only for backend sqlite; size PostgreSQL there")
        if self.backend == "postgresql" and not self.dsn:
            raise field_error(
                "dsn",
                "is required for backend postgresql (a libpq connection "
                'string, e.g. "host=db1 dbname=runwatch user=runwatch")',
            )
        if self.backend == "sqlite" and self.dsn:
            raise field_error("dsn", "is only for backend postgresql; SQLite lives in data_dir")


class CollectorConfig(_Config, frozen=True):
    listen: str = "127.0.0.1:9330"
    # The URL agents and people reach the collector by when it is not `listen` (a reverse
    # proxy, a DNS name): its host is one the collector answers to, and one beyond loopback.
    external_url: str | None = None
    # More host names (globs) requests may name in their Host header; see collector/access.py.
    allowed_hosts: list[str] = []
    data_dir: Path = Path("/var/lib/runwatch")
    store: StoreConfig = StoreConfig()
    agents: AgentsConfig = AgentsConfig()
    operators: OperatorsConfig = OperatorsConfig()
    sinks: dict[str, SinkConfig] = {}
    groups: dict[GroupName, GroupConfig] = {}
    rule_files: list[str] = []  # globs, relative to this file, each holding `rules:`
    rules: list[RuleConfig] = []
    staleness: StalenessConfig = StalenessConfig()
    evaluation_interval: Duration = Duration(5)
    sync_interval: Duration = Duration(60)  # how often open calls' tickets are read back
    outbox: OutboxConfig = OutboxConfig()
    storm: StormConfig = StormConfig()
    templates: TemplatesConfig = TemplatesConfig()
    # A link for each call, as a template: "https://grafana.example/d/runwatch?var-host={{ host }}"
    dashboard_url: str | None = None

    def __post_init__(self) -> None:
        _check_template("dashboard_url", self.dashboard_url)

    metrics: MetricsConfig = MetricsConfig()
    limits: LimitsConfig = LimitsConfig()
    server: ServerConfig = ServerConfig()
    tls: TlsConfig | None = None  # unset: plain HTTP (for instance behind a reverse proxy)
    flapping: FlappingConfig = FlappingConfig()
    host_groups: list[HostGroupConfig] = []  # threshold overrides; the first match wins
    parents: dict[str, list[str]] = {}  # host glob -> parent hosts (dependencies)
    maintenance: list[MaintenanceConfig] = []  # recurring weekly windows
    history: HistoryConfig = HistoryConfig()
    silences: SilencesConfig = SilencesConfig()
    services: dict[str, ServiceConfig] = {}  # what users know; see collector/services/
    # Business hours by name, for SLA and OLA targets (`always` is built in).
    calendars: dict[str, CalendarConfig] = {}
    status_page: StatusPageConfig = StatusPageConfig()  # the public services, for users
    notifications: NotifyConfig = NotifyConfig()  # collector/notify/config.py

    @property
    def tokens_file(self) -> Path:
        return self.agents.tokens_file or self.data_dir / "agents.tokens"

    @property
    def operator_tokens_file(self) -> Path:
        return self.operators.tokens_file or self.data_dir / "operators.tokens"

    @property
    def users_file(self) -> Path:
        return self.operators.users_file or self.data_dir / "users"

    @property
    def listen_address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]") or "127.0.0.1", int(port)


class _RuleFile(_Config, frozen=True):
    rules: list[RuleConfig] = []


_NAME_RULE = {
    "groups": "lowercase letters, digits, '-' and '_', starting with a letter",
    "sinks": "letters, digits, '-' and '_'",
    "services": "lowercase letters, digits, '-' and '_', starting with a letter",
    "calendars": "lowercase letters, digits, '-' and '_', starting with a letter",
}


def _prevalidate(data: dict[str, Any], source: str | None) -> None:
    """Validate named sections key by key, so an error names the group or sink that holds it."""
    prevalidate_notify(data, source)
    prevalidate_targets(data, source)
    sections: tuple[tuple[str, Any, str], ...] = (
        ("groups", GroupConfig, r"^[a-z][a-z0-9_-]*$"),
        ("sinks", SinkConfig, r"^[A-Za-z0-9_-]+$"),
        ("services", ServiceConfig, r"^[a-z][a-z0-9_-]*$"),
        ("calendars", CalendarConfig, r"^[a-z][a-z0-9_-]*$"),
    )
    for section, typ, pattern in sections:
        entries = data.get(section)
        if not isinstance(entries, dict):
            continue
        for name, value in entries.items():
            if not isinstance(name, str) or not re.match(pattern, name):
                raise ConfigError(
                    f"{section} -> {name}", f"names here use {_NAME_RULE[section]}", source=source
                )
            try:
                convert(value, typ, source=source, prefix=f"{section} -> {name}")
            except ConfigError as exc:
                if section == "sinks" and exc.path.endswith("-> type"):
                    raise ConfigError(
                        exc.path,
                        f"{exc.message}; known sink types: {', '.join(SINK_TYPES)}",
                        source=source,
                    ) from None
                raise


def _check_listen(listen: str, source: str | None) -> None:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(
            "listen", f"expected HOST:PORT such as 127.0.0.1:9330, got {listen!r}", source=source
        )


def _check_tls(tls: TlsConfig, source: str | None) -> None:
    """Load the certificate and key now, so a mistake shows at load and not at first connection."""
    texts: dict[str, str] = {}
    for key in ("cert_file", "key_file"):
        path = getattr(tls, key)
        try:
            texts[key] = path.read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise ConfigError(
                f"tls -> {key}", f"cannot read {path}: {exc.strerror}", source=source
            ) from None
    if "-----BEGIN CERTIFICATE-----" not in texts["cert_file"]:
        raise ConfigError(
            "tls -> cert_file",
            f"{tls.cert_file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            source=source,
        )
    key = texts["key_file"]
    if "ENCRYPTED PRIVATE KEY-----" in key or "Proc-Type: 4,ENCRYPTED" in key:
        raise ConfigError(
            "tls -> key_file",
            f"{tls.key_file} is encrypted; the collector needs "
            "the key unencrypted, in a file only its user can read",
            source=source,
        )
    if "PRIVATE KEY-----" not in key:
        raise ConfigError(
            "tls -> key_file",
            f"{tls.key_file} holds no PEM private key (-----BEGIN PRIVATE KEY-----)",
            source=source,
        )
    import ssl  # only when TLS is configured

    try:
        # The password callback stops OpenSSL from prompting on the terminal.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
            tls.cert_file, tls.key_file, password=lambda: b""
        )
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                "tls -> key_file",
                f"{tls.key_file} is not the key of the certificate in {tls.cert_file}",
                source=source,
            ) from None
        raise ConfigError(
            "tls", f"cannot load the certificate and key: {exc}", source=source
        ) from None


def _check_server(server: ServerConfig, source: str | None) -> None:
    """Refuse an HTTP parser or event loop named in the config that is not installed."""
    import importlib.util

    for key, module in (("http", server.http), ("loop", server.loop)):
        if module in ("httptools", "uvloop") and importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"server -> {key}",
                f"{module} is not installed: install it (pip install {module}), or choose "
                f"auto, which falls back to {'h11' if key == 'http' else 'asyncio'}",
                source=source,
            )


def _resolve_access(config: CollectorConfig, source: str | None) -> CollectorConfig:
    """Check `external_url`; give `operators.read_api` and `metrics` their derived defaults."""
    if config.external_url is not None and url_host(config.external_url) is None:
        raise ConfigError(
            "external_url",
            "expected an http:// or https:// URL such as "
            f"https://collector.example.org, got {config.external_url!r}",
            source=source,
        )
    for i, pattern in enumerate(config.allowed_hosts, start=1):
        if not pattern.strip() or any(c.isspace() or c in "/:" for c in pattern):
            raise ConfigError(
                f"allowed_hosts -> {i}",
                "expected a host name or a glob such "
                f"as *.example.org (no port, no scheme), got {pattern!r}",
                source=source,
            )
    default = "token" if beyond_loopback(config) else "open"
    operators = config.operators
    return msgspec.structs.replace(
        config,
        operators=msgspec.structs.replace(
            operators, read_api=operators.read_api or default, metrics=operators.metrics or default
        ),
    )


def _validate(
    config: CollectorConfig, source: str | None, rule_sources: list[tuple[str, str]]
) -> CollectorConfig:
    """Check what a single key cannot: references between sinks, groups and rules."""
    _check_listen(config.listen, source)
    config = _resolve_access(config, source)
    if config.tls is not None:
        _check_tls(config.tls, source)
    _check_server(config.server, source)
    if float(config.evaluation_interval) < 0.1:
        raise ConfigError("evaluation_interval", "must be at least 0.1s", source=source)
    for name, group in config.groups.items():
        if group.sink not in config.sinks:
            known = ", ".join(sorted(config.sinks)) or "none"
            raise ConfigError(
                f"groups -> {name} -> sink",
                f"unknown sink {group.sink!r} (sinks: {known})",
                source=source,
            )
        allowed: frozenset[str] = getattr(config.sinks[group.sink], "route_keys", frozenset())
        for key in group.route:
            if key not in allowed:
                what = ", ".join(sorted(allowed)) or "nothing: it has no routing"
                raise ConfigError(
                    f"groups -> {name} -> route -> {key}",
                    f"sink {group.sink!r} routes by {what}",
                    source=source,
                )
    seen: dict[str, str] = {}
    for rule, (where, path) in zip(config.rules, rule_sources, strict=True):
        if rule.owner not in config.groups:
            known = ", ".join(sorted(config.groups)) or "none"
            raise ConfigError(
                f"{path} -> owner", f"unknown group {rule.owner!r} (groups: {known})", source=where
            )
        if rule.name in BUILTIN_RULES:
            raise ConfigError(
                f"{path} -> name", f"{rule.name!r} is a built-in rule name", source=where
            )
        if rule.name in seen:
            raise ConfigError(
                f"{path} -> name",
                f"rule {rule.name!r} is already defined at {seen[rule.name]}; "
                "each rule needs one name and one owner",
                source=where,
            )
        seen[rule.name] = f"{where}: {path}" if where else path
    owner = config.staleness.owner
    if owner is not None and owner not in config.groups:
        raise ConfigError("staleness -> owner", f"unknown group {owner!r}", source=source)
    validate_notify(config, source)
    return _validate_evaluation(config, source, rule_sources)


def _validate_evaluation(
    config: CollectorConfig, source: str | None, rule_sources: list[tuple[str, str]]
) -> CollectorConfig:
    """Check forecasts, host groups and maintenance windows; return the rules normalized."""
    for rule, (where, path) in zip(config.rules, rule_sources, strict=True):
        forecast = rule.forecast
        if forecast is None:
            continue
        for key in ("warning", "critical", "clear"):
            if getattr(rule, key) is not None:
                raise ConfigError(
                    f"{path} -> {key}",
                    "a forecast rule takes its thresholds "
                    f"as times under `forecast` (forecast -> {key}: 3d)",
                    source=where,
                )
        if float(forecast.over) > float(config.history.retention):
            raise ConfigError(
                f"{path} -> forecast -> over",
                f"looks back further than the "
                f"history is kept (history -> retention: "
                f"{config.history.retention})",
                source=where,
            )
    rules = {rule.name: normalized(rule) for rule in config.rules}
    names: set[str] = set()
    for i, host_group in enumerate(config.host_groups, start=1):
        if host_group.name in names:
            raise ConfigError(
                f"host_groups -> {i} -> name",
                f"host group {host_group.name!r} is defined twice",
                source=source,
            )
        names.add(host_group.name)
        for rule_name, override in host_group.thresholds.items():
            where = f"host_groups -> {i} -> thresholds -> {rule_name}"
            if rule_name not in rules:
                raise ConfigError(where, f"unknown rule {rule_name!r}", source=source)
            try:
                apply_override(rules[rule_name], override)
            except ConfigError as exc:
                raise ConfigError(
                    f"{where} -> {exc.path}" if exc.path else where, exc.message, source=source
                ) from None
    for i, window in enumerate(config.maintenance, start=1):
        if any(w.name == window.name for w in config.maintenance[: i - 1]):
            raise ConfigError(
                f"maintenance -> {i} -> name",
                f"maintenance window {window.name!r} is defined twice",
                source=source,
            )
    check_services(config.services, config.groups, [*rules, STALE_RULE, CHECK_STALE_RULE], source)
    check_calendars(config.calendars, source)
    check_targets(
        config.calendars,
        {name: s.sla for name, s in config.services.items()},
        {name: g.ola for name, g in config.groups.items()},
        source,
    )
    return msgspec.structs.replace(config, rules=list(rules.values()))


def normalized(rule: RuleConfig) -> RuleConfig:
    """A forecast rule as the evaluator sees it: thresholds in seconds left, direction below."""
    forecast = rule.forecast
    if forecast is None or rule.warning is not None or rule.critical is not None:
        return rule
    return msgspec.structs.replace(
        rule,
        direction="below",
        warning=float(forecast.warning) if forecast.warning is not None else None,
        critical=float(forecast.critical) if forecast.critical is not None else None,
        clear=float(forecast.clear) if forecast.clear is not None else None,
    )


def _threshold_value(rule: RuleConfig, key: str, raw: float | str | None) -> float | None:
    if raw is None:
        return None
    if rule.forecast is not None:
        try:
            return float(Duration.parse(raw))
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
    if isinstance(raw, str):
        raise ConfigError(key, f"expected a number, got {raw!r}")
    return float(raw)


def apply_override(rule: RuleConfig, override: ThresholdOverride) -> RuleConfig:
    """The rule with a host group's thresholds in place; raise ConfigError if they clash."""
    values: dict[str, Any] = {}
    for key in ("warning", "critical", "clear"):
        value = _threshold_value(rule, key, getattr(override, key))
        if value is not None:
            values[key] = value
    if override.for_ is not None:
        values["for_"] = override.for_
    if not values:
        return rule
    try:
        merged = msgspec.structs.replace(rule, **values)
        # A forecast rule's own checks are on its times: run the plain rule's checks too
        # (warning before critical, clear not past the first threshold).
        msgspec.structs.replace(merged, forecast=None)
    except ValueError as exc:
        key, _, message = str(exc).partition("] ")
        if key.startswith("[") and message:
            raise ConfigError(key[1:], message) from None
        raise ConfigError("", str(exc)) from None
    return merged


def load_collector_config(
    path: Path,
    overrides: dict[str, Any] | None = None,
    *,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> CollectorConfig:
    """Load and validate a collector config; relative paths are relative to the file (`edit`:
    see checks.settings.load_yaml)."""
    base = path.parent.resolve()

    def prepare(data: dict[str, Any]) -> None:
        data.update(overrides or {})
        resolve_paths(base, data, "data_dir")
        sinks = data.get("sinks")
        for sink in sinks.values() if isinstance(sinks, dict) else ():
            if not isinstance(sink, dict):
                continue
            # Secrets ({file: PATH}) and CA bundles, like every path here, are relative to
            # this file.
            resolve_paths(base, sink, "ca_file")
            for value in sink.values():
                resolve_paths(base, value, "file")
        resolve_paths(base, data.get("agents"), "tokens_file")
        resolve_paths(base, data.get("operators"), "tokens_file", "users_file")
        resolve_paths(base, data.get("tls"), "cert_file", "key_file")
        resolve_notify_paths(base, data)

    config = load_yaml(path, CollectorConfig, defaults=prepare, prevalidate=_prevalidate, edit=edit)
    source = str(path)
    rule_sources = [(source, f"rules -> {i}") for i in range(1, len(config.rules) + 1)]
    rules = list(config.rules)
    for i, pattern in enumerate(config.rule_files, start=1):
        matches = sorted(glob.glob(str(base / pattern)))
        if not matches:
            raise ConfigError(f"rule_files -> {i}", f"no file matches {pattern!r}", source=source)
        for file in matches:
            extra = load_yaml(Path(file), _RuleFile)
            rules.extend(extra.rules)
            rule_sources.extend((file, f"rules -> {j}") for j in range(1, len(extra.rules) + 1))
    config = msgspec.structs.replace(config, rules=rules)
    return _validate(config, source, rule_sources)


def collector_config_from_dict(data: dict[str, Any]) -> CollectorConfig:
    """Validate a config given as data (tests, `runwatch up`)."""
    _prevalidate(data, None)
    config = convert(data, CollectorConfig)
    return _validate(config, None, [("", f"rules -> {i}") for i in range(1, len(config.rules) + 1)])
