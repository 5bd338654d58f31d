"""Who may reach the collector: loopback or beyond, and the host names it answers to.

A browser can be made to send requests to a collector it reaches (on loopback, or on the LAN)
from a page of another site whose DNS name is re-pointed at the collector's address (DNS
rebinding). Such requests name the other site in their Host header and carry no token: the
Host check refuses them, so nothing that answers without a token leaks to that page.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import ipaddress
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collector.config import CollectorConfig


def is_loopback(host: str) -> bool:
    """Whether a host name or address (from `listen` or a URL) is reached from this machine
    only: 127.0.0.0/8, ::1, `localhost` and names under `.localhost`."""
    name = host.strip("[]").rstrip(".").lower()
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name == "localhost" or name.endswith(".localhost")


def url_host(url: str) -> str | None:
    """The host name of an http(s) URL, lowercased; None if it is no such URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname.lower()


def beyond_loopback(config: CollectorConfig) -> bool:
    """Whether others than this machine may reach the collector: it listens on an address
    that is not loopback, or `external_url` names one (a reverse proxy in front)."""
    if not is_loopback(config.listen_address[0]):
        return True
    external = url_host(config.external_url) if config.external_url else None
    return external is not None and not is_loopback(external)


def exposure_warnings(config: CollectorConfig) -> list[str]:
    """What the collector serves without a token to others than this machine."""
    if not beyond_loopback(config):
        return []
    what = {
        "read_api": "host names, measurements, check output, calls, silences and outbox "
        "errors (the read API)",
        "metrics": "every host, label and measurement (/metrics)",
    }
    return [
        f"operators.{key} is open beyond loopback: anyone who reaches {config.listen} "
        f"reads {text}; set operators.{key}: token (the default) unless a firewall or "
        "proxy keeps others out"
        for key, text in what.items()
        if getattr(config.operators, key) == "open"
    ]


@functools.cache
def this_machine_names() -> tuple[str, ...]:
    """This machine's own names: its host name and fully qualified name."""
    names = {socket.gethostname().lower()}
    with contextlib.suppress(OSError):  # a machine without a resolvable name has its host name
        names.add(socket.getfqdn().lower())
    return tuple(sorted(name for name in names if name))


class HostPolicy:
    """The host names requests may carry in their Host header.

    Allowed: IP literals (a rebinding page always sends its own DNS name), loopback names,
    the `listen` host, `external_url`'s host, this machine's names, and `allowed_hosts`
    (globs; `*` turns the check off)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(sorted({p.rstrip(".").lower() for p in patterns if p}))

    @classmethod
    def from_config(
        cls, config: CollectorConfig, machine_names: Iterable[str] | None = None
    ) -> HostPolicy:
        names = [config.listen_address[0], *config.allowed_hosts]
        if config.external_url:
            names.append(url_host(config.external_url) or "")
        names.extend(this_machine_names() if machine_names is None else machine_names)
        return cls(names)

    def allows(self, header: str) -> bool:
        """Whether a Host header (`name[:port]`, `[v6]:port`) names this collector."""
        if not header:
            return True  # HTTP/1.0 without Host: not a browser
        host = header.strip().lower()
        if host.startswith("["):
            host = host[1:].partition("]")[0]
        elif host.count(":") == 1:
            host = host.partition(":")[0]
        host = host.rstrip(".")
        try:
            ipaddress.ip_address(host)
            return True
        except ValueError:
            pass
        if is_loopback(host):
            return True
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.patterns)

    def refusal(self, header: str) -> str:
        """Why a request naming `header` is refused, and what to change if it is ours."""
        return (
            f"this collector does not answer to the host name {header!r} (the request's "
            "Host header); if that is one of its names, add it to allowed_hosts (or set "
            "external_url) in the collector config, or send a token"
        )
