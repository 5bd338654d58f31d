"""The deploy inventory: hosts, the groups whose defaults they inherit, and the collector."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import msgspec

from checks.schema import HOST_NAME_PATTERN
from checks.settings import ConfigError, Duration, convert, field_error, load_yaml

ServiceKind = Literal["auto", "systemd", "process"]
_GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HOST_NAME = re.compile(HOST_NAME_PATTERN)

DEFAULT_INSTALL_ROOT = "/opt/runwatch"
DEFAULT_REPORT_TIMEOUT = Duration(60)


class _Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class HostSettings(_Config, frozen=True, kw_only=True):
    """Settings a group gives its hosts and a host may override; unset means inherited."""

    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] | None = None
    user: Annotated[str, msgspec.Meta(pattern=r"^[a-z_][a-z0-9_.-]*$")] | None = None
    key: Path | None = None  # private key file; relative to the inventory
    install_root: str | None = None  # on the host; its own per host sharing a machine
    python: str | None = None  # the host's interpreter (default: python3)
    service: ServiceKind | None = None  # auto: systemd where it runs, else a supervised process
    report_timeout: Duration | None = None  # how long to wait for the first report
    vars: dict[str, Any] = {}  # for the agent config template

    def __post_init__(self) -> None:
        root = self.install_root
        if root is not None:
            path = PurePosixPath(root)
            if not path.is_absolute() or len(path.parts) < 2 or ".." in path.parts:
                raise field_error("install_root", f"must be an absolute path below /, got {root!r}")


class GroupEntry(HostSettings, frozen=True, kw_only=True):
    pass


class HostEntry(HostSettings, frozen=True, kw_only=True):
    address: Annotated[str, msgspec.Meta(min_length=1)]
    groups: list[str] = []


class CollectorSettings(_Config, frozen=True, kw_only=True):
    """Where agents report (`url`), and how deploy reaches the collector's API to enrol them."""

    url: str
    api_url: str | None = None  # default: url
    operator_token_file: Path
    ca_file: Path | None = None  # for an https API with a private CA

    def __post_init__(self) -> None:
        for name in ("url", "api_url"):
            value = getattr(self, name)
            if value is not None and not value.startswith(("http://", "https://")):
                raise field_error(name, f"must start with http:// or https://, got {value!r}")


class _InventoryFile(_Config, frozen=True, kw_only=True):
    collector: CollectorSettings
    known_hosts: Path = Path("~/.ssh/known_hosts")
    template: Path | None = None  # Jinja2 agent config; default: the shipped one
    groups: dict[str, GroupEntry] = {}
    hosts: dict[str, HostEntry]


@dataclass(frozen=True)
class DeployTarget:
    """One host with its group defaults applied: everything deploy needs to reach it."""

    name: str  # the inventory key, also the agent's `host` name at the collector
    address: str
    port: int
    user: str
    key: Path
    groups: tuple[str, ...]
    install_root: str
    python: str
    service: ServiceKind
    report_timeout: float  # seconds
    vars: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """`user@address:port`, for messages."""
        return f"{self.user}@{self.address}:{self.port}"


@dataclass(frozen=True)
class Inventory:
    collector: CollectorSettings
    known_hosts: Path
    template: Path | None
    targets: list[DeployTarget]
    source: str | None = None

    def select(self, patterns: str | None) -> list[DeployTarget]:
        """Hosts whose name or one of whose groups matches a comma-separated glob list."""
        if not patterns:
            return list(self.targets)
        globs = [p.strip() for p in patterns.split(",") if p.strip()]
        return [
            t
            for t in self.targets
            if any(fnmatch.fnmatchcase(name, g) for g in globs for name in (t.name, *t.groups))
        ]


def _expand(base: Path, path: Path) -> Path:
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def _prevalidate(data: dict[str, Any], source: str | None) -> None:
    """Validate groups and hosts one by one, so an error names the entry that holds it."""
    for section, typ in (("groups", GroupEntry), ("hosts", HostEntry)):
        entries = data.get(section)
        if section == "hosts" and not entries:
            raise ConfigError("hosts", "an inventory needs at least one host", source=source)
        if not isinstance(entries, dict):
            continue
        pattern = _HOST_NAME if section == "hosts" else _GROUP_NAME
        for name, value in entries.items():
            if not isinstance(name, str) or not pattern.match(name):
                raise ConfigError(
                    f"{section} -> {name}",
                    "names here use letters, digits, '.', "
                    "'-' and '_', starting with a letter or digit",
                    source=source,
                )
            convert(
                value if value is not None else {},
                typ,
                source=source,
                prefix=f"{section} -> {name}",
            )
            if value is None:
                entries[name] = {}


def _resolve(
    name: str, host: HostEntry, raw: _InventoryFile, base: Path, source: str | None
) -> DeployTarget:
    where = f"hosts -> {name}"
    layers: list[HostSettings] = []
    for index, group in enumerate(host.groups, start=1):
        if group not in raw.groups:
            known = ", ".join(sorted(raw.groups)) or "none"
            raise ConfigError(
                f"{where} -> groups -> {index}",
                f"unknown group {group!r} (groups: {known})",
                source=source,
            )
        layers.append(raw.groups[group])
    layers.append(host)  # later layers win: groups in the order listed, then the host

    def pick(key: str) -> Any:
        value = None
        for layer in layers:
            if getattr(layer, key) is not None:
                value = getattr(layer, key)
        return value

    key = pick("key")
    if key is None:
        raise ConfigError(
            f"{where} -> key",
            "required key is missing: set it on the host or on "
            "one of its groups (a private key file for SSH)",
            source=source,
        )
    variables: dict[str, Any] = {}
    for layer in layers:
        variables.update(layer.vars)
    timeout = pick("report_timeout")
    return DeployTarget(
        name=name,
        address=host.address,
        port=pick("port") or 22,
        user=pick("user") or "root",
        key=_expand(base, key),
        groups=tuple(host.groups),
        install_root=str(PurePosixPath(pick("install_root") or DEFAULT_INSTALL_ROOT)),
        python=pick("python") or "python3",
        service=pick("service") or "auto",
        report_timeout=float(timeout if timeout is not None else DEFAULT_REPORT_TIMEOUT),
        vars=variables,
    )


def load_inventory(path: Path) -> Inventory:
    """Load and validate an inventory; relative paths are relative to its file."""
    raw = load_yaml(path, _InventoryFile, prevalidate=_prevalidate)
    source = str(path)
    base = path.parent.resolve()
    targets = [_resolve(name, host, raw, base, source) for name, host in raw.hosts.items()]
    seen: dict[tuple[str, int, str], str] = {}
    for target in targets:
        place = (target.address, target.port, target.install_root)
        if place in seen:
            raise ConfigError(
                f"hosts -> {target.name} -> install_root",
                f"{target.install_root} on {target.address}:{target.port} is "
                f"already the install root of hosts -> {seen[place]}; hosts that "
                "share a machine need their own",
                source=source,
            )
        seen[place] = target.name
    collector = raw.collector
    collector = msgspec.structs.replace(
        collector,
        operator_token_file=_expand(base, collector.operator_token_file),
        ca_file=_expand(base, collector.ca_file) if collector.ca_file else None,
    )
    return Inventory(
        collector=collector,
        known_hosts=_expand(base, raw.known_hosts),
        template=_expand(base, raw.template) if raw.template else None,
        targets=targets,
        source=source,
    )
