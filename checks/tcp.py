"""TCP check: whether a port accepts a connection, and how long the handshake took."""

from __future__ import annotations

import logging
import socket
from typing import ClassVar

from checks.base import CheckOptions, ProbeBase
from checks.schema import Measurement
from checks.settings import field_error

_log = logging.getLogger(__name__)


def split_address(address: str) -> tuple[str, int]:
    """Split `host:port` or `[v6]:port` into host and port; raise ValueError if it is neither."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected host:port (IPv6 as [::1]:port), got {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"put an IPv6 address in brackets, as [{host}]:{port_text}")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"port must be 1-65535, got {port}")
    return host, port


class TcpOptions(CheckOptions, tag="tcp", frozen=True):
    """Where to connect."""

    address: str  # host:port, or [v6]:port
    target: str | None = None  # label; defaults to the address

    default_timeout: ClassVar[float] = 10.0

    def __post_init__(self) -> None:
        try:
            split_address(self.address)
        except ValueError as exc:
            raise field_error("address", str(exc)) from None


class TcpCheck(ProbeBase[TcpOptions]):
    """Connect once and report success and, when connected, the time the connect took.

    A refused, unreachable or timed-out connection is a measurement (`tcp_connect_success 0`),
    not a failed check: the port being closed is exactly what this check is for.
    """

    def _prepare(self) -> None:
        self._address = split_address(self._options.address)
        self._labels = {"target": self._options.target or self._options.address}
        # Give up a little before the runner does, so a timeout reads as success 0, not as
        # a check that hung.
        self._connect_timeout = self._timeout * 0.9

    def collect(self) -> list[Measurement]:
        """Connect, close, and return success and the connect time."""
        started = self._monotonic()
        try:
            with socket.create_connection(self._address, timeout=self._connect_timeout):
                elapsed = self._monotonic() - started
        except OSError as exc:  # refused, unreachable, timed out, or a name that does not resolve
            _log.info("tcp check: cannot connect to %s: %s", self._options.address, exc)
            return [self._measurement("tcp_connect_success", 0, self._clock())]
        now = self._clock()
        return [
            self._measurement("tcp_connect_success", 1, now),
            self._measurement("tcp_connect_seconds", elapsed, now, "seconds"),
        ]
