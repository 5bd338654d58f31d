"""The `notifications:` section: channels (e-mail, apprise URLs) and who is told of what.

Channels are named; rules choose, per run group, which channels hear of a call's open,
severity change, escalation and resolve, limited by severity and by quiet hours in a time zone.
Secrets live in files or environment variables (`{file: PATH}`, `{env: NAME}`), are read once at
load to check them, and are read again at each delivery, so a rotated file takes effect without
a restart.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from checks.settings import ConfigError, Duration, convert, field_error, resolve_paths
from collector.sinks.contract import SEVERITIES, Secret, SinkError

if TYPE_CHECKING:
    from collector.config import CollectorConfig

Event = Literal["open", "severity", "escalation", "resolve"]
EVENTS: tuple[Event, ...] = ("open", "severity", "escalation", "resolve")
SeverityName = Literal["CRITICAL", "WARNING", "UNKNOWN", "STALE"]
ChannelName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]+$", max_length=100)]
Clock = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]
# What the outbox's `sink` column says for a notification: `notify:<channel>`.
OUTBOX_PREFIX = "notify:"
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_HOST = re.compile(r"^[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:.]+\]$")


def _zone(name: str) -> Any:
    """The time zone `name` (zoneinfo loads here, not with the config: the agent shares it)."""
    import zoneinfo

    return zoneinfo.ZoneInfo(name)


def _check_zone(name: str) -> None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise field_error(
            "timezone", f"unknown time zone {name!r} (use a name such as Europe/Berlin)"
        ) from None


class _Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


def _check_address(key: str, address: str) -> None:
    if not _ADDRESS.match(address):
        raise field_error(key, f"expected an address such as ops@example.org, got {address!r}")


class SmtpConfig(_Config, frozen=True):
    """The mail server the collector hands its mail to."""

    host: str
    # Default by `security`: 587 for starttls, 465 for tls, 25 for none.
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    # starttls: plain connection upgraded to TLS (refused if the server cannot); tls: TLS from
    # the first byte (SMTPS); none: no encryption (loopback or a trusted relay only).
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: Secret | None = None
    ca_file: str | None = None
    verify_tls: bool = True
    timeout: Duration = Duration(10)

    def __post_init__(self) -> None:
        if not _HOST.match(self.host):
            raise field_error("host", f"expected a host name or address, got {self.host!r}")
        if (self.username is None) != (self.password is None):
            raise field_error("password", "give both username and password, or neither")
        if self.password is not None and self.security == "none":
            raise field_error(
                "security", "a password is only sent over TLS: use starttls or tls with it"
            )
        if not 0 < float(self.timeout) <= 120:
            raise field_error("timeout", "must be more than 0s and at most 2m")

    @property
    def effective_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]


class EmailChannelConfig(_Config, frozen=True, tag_field="type", tag="email"):
    """Mail to fixed addresses: one thread per call (see docs/notifications.md)."""

    smtp: SmtpConfig
    from_: str = msgspec.field(name="from")
    to: Annotated[list[str], msgspec.Meta(min_length=1)]
    # The right-hand side of the Message-IDs; default: the domain of `from`.
    message_id_domain: str | None = None

    def __post_init__(self) -> None:
        _check_address("from", _bare(self.from_))
        for address in self.to:
            _check_address("to", address)
        if self.message_id_domain is not None and not re.match(
            r"^[A-Za-z0-9.-]+$", self.message_id_domain
        ):
            raise field_error("message_id_domain", "expected a domain name such as example.org")

    @property
    def id_domain(self) -> str:
        return self.message_id_domain or _bare(self.from_).rpartition("@")[2]

    def secrets(self) -> list[tuple[str, Secret]]:
        return [("smtp -> password", self.smtp.password)] if self.smtp.password else []


class AppriseChannelConfig(_Config, frozen=True, tag_field="type", tag="apprise"):
    """One apprise URL (Slack, Teams, Matrix, Telegram, ntfy, Gotify, PagerDuty, …).

    A URL that carries a token belongs in a file or a variable: `url: {env: RUNWATCH_SLACK}`.
    """

    url: str | Secret
    timeout: Duration = Duration(10)

    def __post_init__(self) -> None:
        if isinstance(self.url, str) and "://" not in self.url:
            raise field_error(
                "url", f"expected an apprise URL such as ntfys://ops, got {self.url!r}"
            )

    def secrets(self) -> list[tuple[str, Secret]]:
        return [("url", self.url)] if isinstance(self.url, Secret) else []

    def read_url(self) -> str:
        return self.url.read() if isinstance(self.url, Secret) else self.url


ChannelConfig = EmailChannelConfig | AppriseChannelConfig
CHANNEL_TYPES = ("email", "apprise")


def _bare(address: str) -> str:
    """`Runwatch <runwatch@example.org>` -> `runwatch@example.org`."""
    match = re.search(r"<([^<>]+)>\s*$", address)
    return match.group(1).strip() if match else address.strip()


class QuietHours(_Config, frozen=True):
    """A daily quiet period in a time zone: messages of the held severities wait until it ends.

    `start` after `end` spans midnight (22:00 to 07:00). Severities in `urgent` go at once.
    """

    start: Clock
    end: Clock
    timezone: str = "UTC"
    urgent: list[SeverityName] = msgspec.field(default_factory=lambda: ["CRITICAL"])

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise field_error("end", "must differ from start")
        _check_zone(self.timezone)

    def release_at(self, severity: str, now: float) -> float:
        """When a message of `severity` written at `now` may go: `now`, or the end of the quiet
        period `now` falls in."""
        if severity in self.urgent:
            return now
        zone = _zone(self.timezone)
        local = datetime.fromtimestamp(now, zone)
        minute = local.hour * 60 + local.minute
        start, end = _minutes(self.start), _minutes(self.end)
        if start < end:
            quiet, next_day = start <= minute < end, False
        else:
            quiet, next_day = minute >= start or minute < end, minute >= start
        if not quiet:
            return now
        day = local.date() + timedelta(days=1 if next_day else 0)
        release = datetime(day.year, day.month, day.day, end // 60, end % 60, tzinfo=zone)
        return max(now, release.timestamp())


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class NotifyRule(_Config, frozen=True):
    """Who hears of what: the calls of `groups` (all when empty) reach `channels`, and with
    `oncall` also the channels of the person on call for the call's group."""

    channels: list[ChannelName] = []
    oncall: bool = False
    groups: list[str] = []
    events: list[Event] = msgspec.field(default_factory=lambda: list(EVENTS))
    severities: list[SeverityName] = msgspec.field(
        default_factory=lambda: ["CRITICAL", "WARNING", "UNKNOWN", "STALE"]
    )
    quiet_hours: QuietHours | None = None

    def __post_init__(self) -> None:
        if not self.channels and not self.oncall:
            raise field_error("channels", "name at least one channel, or set oncall: true")
        if not self.events:
            raise field_error("events", f"name at least one of {', '.join(EVENTS)}")
        if not self.severities:
            raise field_error("severities", f"name at least one of {', '.join(SEVERITIES)}")


LocalTime = Annotated[
    str, msgspec.Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T]([01][0-9]|2[0-3]):[0-5][0-9]$")
]
PersonName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+$", max_length=100)]


def local_time(text: str, zone: str) -> datetime:
    """`2027-01-04 09:00` in the time zone `zone`."""
    return datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=_zone(zone))


class Person(_Config, frozen=True):
    """Someone who can be on call, and the channels that reach them."""

    channels: Annotated[list[ChannelName], msgspec.Meta(min_length=1)]


class RotaOverride(_Config, frozen=True):
    """Someone else on call from `start` to `end` (the rota's time zone): a holiday, a swap."""

    start: LocalTime
    end: LocalTime
    person: PersonName
    reason: str = ""


class Rota(_Config, frozen=True):
    """A run group's weekly rotation: `people` take over in turn, a week each, the first at
    `starts` and the next one a week later at the same local time."""

    people: Annotated[list[PersonName], msgspec.Meta(min_length=1)]
    starts: LocalTime
    timezone: str = "UTC"
    overrides: list[RotaOverride] = []

    def __post_init__(self) -> None:
        _check_zone(self.timezone)
        for override in self.overrides:
            if local_time(override.end, "UTC") <= local_time(override.start, "UTC"):
                raise field_error("overrides", f"{override.start} to {override.end}: ends first")


class EscalationLevel(_Config, frozen=True):
    """One step up for a call nobody acknowledged: who is told, and how long after the step
    before it (or the call's open) it comes; `after` defaults to the group's `respond_within`.

    Its people are the next one in the group's rota (`next_on_call`), named `people`, and
    plain `channels`, in any mix.
    """

    after: Duration | None = None
    next_on_call: bool = False
    people: list[PersonName] = []
    channels: list[ChannelName] = []

    def __post_init__(self) -> None:
        if not (self.next_on_call or self.people or self.channels):
            raise field_error("people", "name who is told: next_on_call: true, people or channels")
        if self.after is not None and float(self.after) <= 0:
            raise field_error("after", "must be more than 0s")


EscalationLevels = Annotated[list[EscalationLevel], msgspec.Meta(min_length=1)]


class AckLinksConfig(_Config, frozen=True):
    """The signed link in each notification that acknowledges its call (notify/ack.py).

    Links need the collector's `external_url`. The signing key is `secret` (`{file:}` or
    `{env:}`, at least 32 characters), else one generated on first start in the data dir
    (`ack-links.secret`, mode 0600). `previous_secrets` are still accepted, so a key can be
    rotated without breaking the links already sent.
    """

    enabled: bool = True
    expire_after: Duration = Duration(24 * 3600)
    secret: Secret | None = None
    previous_secrets: list[Secret] = []

    def __post_init__(self) -> None:
        if not 300 <= float(self.expire_after) <= 30 * 86400:
            raise field_error("expire_after", "must be between 5m and 30d")

    def secrets(self) -> list[tuple[str, Secret]]:
        named = [("secret", self.secret)] if self.secret is not None else []
        return named + [
            (f"previous_secrets -> {i}", s) for i, s in enumerate(self.previous_secrets, start=1)
        ]


# A configured signing key's shortest length: 32 characters, as `openssl rand -hex 16` gives.
ACK_SECRET_MIN_CHARS = 32


class RateLimit(_Config, frozen=True):
    """At most `messages` messages per `per` to one channel; the rest wait in one digest."""

    messages: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    per: Duration

    def __post_init__(self) -> None:
        if not 60 <= float(self.per) <= 7 * 86400:
            raise field_error("per", "must be at least 1m and at most 7d")


class StormDigest(_Config, frozen=True):
    """How people hear of a call storm (storm control's umbrella call): one digest per storm.

    `wait`: how long a call's open message waits before it goes, so that a storm that begins
    meanwhile takes it into its digest (0s: it goes at once). `update_every`: at most one
    update of the storm's thread this often. `max_listed`: the problems a digest names."""

    wait: Duration = Duration(0)
    update_every: Duration = Duration(900)
    max_listed: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50

    def __post_init__(self) -> None:
        if not 0 <= float(self.wait) <= 600:
            raise field_error("wait", "must be at least 0s and at most 10m")
        if not 10 <= float(self.update_every) <= 86400:
            raise field_error("update_every", "must be at least 10s and at most 1d")


class NotifyConfig(_Config, frozen=True):
    """Notifications to people, delivered through the outbox like tickets."""

    channels: dict[str, ChannelConfig] = {}
    rules: list[NotifyRule] = []
    people: dict[PersonName, Person] = {}
    rotas: dict[str, Rota] = {}  # run group -> its rota
    # run group -> its levels, in order (collector/notify/escalation.py)
    escalation: dict[str, EscalationLevels] = {}
    ack_links: AckLinksConfig = AckLinksConfig()
    rate_limit: RateLimit | None = None  # per channel (collector/notify/digest.py)
    storm: StormDigest = StormDigest()


# -- the hooks collector/config.py calls ------------------------------------------------------


def resolve_notify_paths(base: Path, data: dict[str, Any]) -> None:
    """Make secret files and CA bundles relative to the config file, like the sinks' ones."""
    section = data.get("notifications")
    links = section.get("ack_links") if isinstance(section, dict) else None
    if isinstance(links, dict):
        resolve_paths(base, links.get("secret"), "file")
        for previous in links.get("previous_secrets") or ():
            resolve_paths(base, previous, "file")
    channels = section.get("channels") if isinstance(section, dict) else None
    for channel in channels.values() if isinstance(channels, dict) else ():
        if not isinstance(channel, dict):
            continue
        resolve_paths(base, channel.get("url"), "file")
        smtp = channel.get("smtp")
        resolve_paths(base, smtp, "ca_file")
        resolve_paths(base, smtp.get("password") if isinstance(smtp, dict) else None, "file")


def prevalidate_notify(data: dict[str, Any], source: str | None) -> None:
    """Validate each channel on its own, so an error names the channel that holds it."""
    section = data.get("notifications")
    if not isinstance(section, dict):
        return
    for key, typ in (("rotas", Rota), ("people", Person), ("escalation", EscalationLevels)):
        entries = section.get(key)
        for name, value in entries.items() if isinstance(entries, dict) else ():
            where = f"notifications -> {key} -> {name}"
            convert(value, typ, source=source, prefix=where)
    channels = section.get("channels")
    if not isinstance(channels, dict):
        return
    for name, value in channels.items():
        where = f"notifications -> channels -> {name}"
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_-]+$", name):
            raise ConfigError(where, "names here use letters, digits, '-' and '_'", source=source)
        try:
            convert(value, ChannelConfig, source=source, prefix=where)  # type: ignore[arg-type]
        except ConfigError as exc:
            if exc.path.endswith("-> type"):
                raise ConfigError(
                    exc.path,
                    f"{exc.message}; known channel types: {', '.join(CHANNEL_TYPES)}",
                    source=source,
                ) from None
            raise


def validate_notify(config: CollectorConfig, source: str | None) -> None:
    """Check references (groups, channels), read every secret once, and parse apprise URLs."""
    notify = config.notifications
    for i, rule in enumerate(notify.rules, start=1):
        where = f"notifications -> rules -> {i}"
        for group in rule.groups:
            if group not in config.groups:
                known = ", ".join(sorted(config.groups)) or "none"
                raise ConfigError(
                    f"{where} -> groups",
                    f"unknown group {group!r} (groups: {known})",
                    source=source,
                )
        for chosen in rule.channels:
            if chosen not in notify.channels:
                known = ", ".join(sorted(notify.channels)) or "none"
                raise ConfigError(
                    f"{where} -> channels",
                    f"unknown channel {chosen!r} (channels: {known})",
                    source=source,
                )
    _validate_rotas(config, source)
    _validate_escalation(config, source)
    _validate_ack_links(notify.ack_links, source)
    for name, channel in notify.channels.items():
        where = f"notifications -> channels -> {name}"
        for key, secret in channel.secrets():
            try:
                secret.read()
            except SinkError as exc:
                raise ConfigError(f"{where} -> {key}", str(exc), source=source) from None
        ca_file = channel.smtp.ca_file if isinstance(channel, EmailChannelConfig) else None
        if ca_file is not None and not Path(ca_file).is_file():
            raise ConfigError(
                f"{where} -> smtp -> ca_file", f"cannot read {ca_file}", source=source
            )
        if isinstance(channel, AppriseChannelConfig):
            from collector.notify.chat import parse_url

            problem = parse_url(channel.read_url())
            if problem:
                # Never the URL itself: it may carry the token.
                raise ConfigError(f"{where} -> url", problem, source=source)


def _validate_rotas(config: CollectorConfig, source: str | None) -> None:
    """People name known channels; rotas belong to known groups and name known people; a rule
    with `oncall` names only groups that have a rota."""
    notify = config.notifications
    for name, someone in notify.people.items():
        for chosen in someone.channels:
            if chosen not in notify.channels:
                known = ", ".join(sorted(notify.channels)) or "none"
                raise ConfigError(
                    f"notifications -> people -> {name} -> channels",
                    f"unknown channel {chosen!r} (channels: {known})",
                    source=source,
                )
    for group, rota in notify.rotas.items():
        where = f"notifications -> rotas -> {group}"
        if group not in config.groups:
            known = ", ".join(sorted(config.groups)) or "none"
            raise ConfigError(where, f"unknown group {group!r} (groups: {known})", source=source)
        named = [(f"{where} -> people", p) for p in rota.people] + [
            (f"{where} -> overrides -> {i} -> person", o.person)
            for i, o in enumerate(rota.overrides, start=1)
        ]
        for path, name in named:
            if name not in notify.people:
                known = ", ".join(sorted(notify.people)) or "none"
                raise ConfigError(path, f"unknown person {name!r} (people: {known})", source=source)
    for i, rule in enumerate(notify.rules, start=1):
        if rule.oncall:
            for group in rule.groups:
                if group not in notify.rotas:
                    raise ConfigError(
                        f"notifications -> rules -> {i} -> groups",
                        f"oncall: true, but group {group!r} has no rota (notifications -> rotas)",
                        source=source,
                    )


def _validate_escalation(config: CollectorConfig, source: str | None) -> None:
    """Levels belong to known groups and name known people and channels; `next_on_call`
    needs the group's rota."""
    notify = config.notifications
    for group, levels in notify.escalation.items():
        where = f"notifications -> escalation -> {group}"
        if group not in config.groups:
            known = ", ".join(sorted(config.groups)) or "none"
            raise ConfigError(where, f"unknown group {group!r} (groups: {known})", source=source)
        for i, level in enumerate(levels, start=1):
            at = f"{where} -> {i}"
            if level.next_on_call and group not in notify.rotas:
                raise ConfigError(
                    f"{at} -> next_on_call",
                    f"group {group!r} has no rota (notifications -> rotas)",
                    source=source,
                )
            for name in level.people:
                if name not in notify.people:
                    known = ", ".join(sorted(notify.people)) or "none"
                    raise ConfigError(
                        f"{at} -> people",
                        f"unknown person {name!r} (people: {known})",
                        source=source,
                    )
            for chosen in level.channels:
                if chosen not in notify.channels:
                    known = ", ".join(sorted(notify.channels)) or "none"
                    raise ConfigError(
                        f"{at} -> channels",
                        f"unknown channel {chosen!r} (channels: {known})",
                        source=source,
                    )


def _validate_ack_links(links: AckLinksConfig, source: str | None) -> None:
    """Every signing key can be read and is long enough."""
    for key, secret in links.secrets():
        where = f"notifications -> ack_links -> {key}"
        try:
            value = secret.read()
        except SinkError as exc:
            raise ConfigError(where, str(exc), source=source) from None
        if len(value) < ACK_SECRET_MIN_CHARS:
            # Never the value: only how long it is.
            raise ConfigError(
                where,
                f"a signing key needs at least {ACK_SECRET_MIN_CHARS} characters, this one "
                f"has {len(value)} (make one with: openssl rand -hex 32)",
                source=source,
            )
