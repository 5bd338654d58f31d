"""Tell systemd how the agent is doing (sd_notify): ready, reloading, stopping, and still alive."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class SystemdNotifier:
    """Send sd_notify messages to the datagram socket named by $NOTIFY_SOCKET.

    Does nothing when $NOTIFY_SOCKET is unset (not started by systemd with Type=notify). With
    $WATCHDOG_USEC set (WatchdogSec= in the unit), `watchdog()` sends WATCHDOG=1 at most once
    per half of it, so an agent whose main loop hangs is restarted by systemd.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        env = os.environ if environ is None else environ
        self._name = env.get("NOTIFY_SOCKET", "")
        self._address = _socket_address(self._name)
        self.watchdog_interval: float | None = _watchdog_interval(env) if self._address else None
        self._monotonic = monotonic
        self._next_ping = 0.0
        self._sock: socket.socket | None = None
        self._last_error = ""

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *states: str) -> bool:
        """Send `KEY=VALUE` lines in one datagram; False when there is nowhere to send them."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.sendto("\n".join(states).encode(), self._address)
        except OSError as exc:
            # Logged once per distinct error: the watchdog would repeat it every few seconds.
            if str(exc) != self._last_error:
                log.warning("cannot notify systemd on %s: %s", self._name, exc)
                self._last_error = str(exc)
            return False
        self._last_error = ""
        return True

    def ready(self) -> None:
        self.notify("READY=1")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd tell this reload from an earlier one (Type=notify-reload).
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        """Send WATCHDOG=1 if half the watchdog interval has passed since the last one."""
        if self.watchdog_interval is None:
            return
        now = self._monotonic()
        if now >= self._next_ping:
            self.notify("WATCHDOG=1")
            self._next_ping = now + self.watchdog_interval

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _socket_address(name: str) -> str | None:
    """The address to send to: a path, or an abstract name (`@name`, sent as NUL + name)."""
    if name.startswith("/"):
        return name
    if name.startswith("@") and len(name) > 1:
        return "\0" + name[1:]
    if name:
        log.warning(
            "NOTIFY_SOCKET=%s is neither a path nor an @abstract name; not notifying systemd", name
        )
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of $WATCHDOG_USEC), if the watchdog is ours."""
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None  # inherited from the process that systemd watches, not meant for us
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None
