"""Ship spooled reports to the collector in order, retrying with backoff; never drop one."""

from __future__ import annotations

import gzip
import http.client
import logging
import random
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.spool import Spool

log = logging.getLogger(__name__)

_GZIP_ABOVE_BYTES = 1024


@dataclass(frozen=True, slots=True)
class SendResult:
    status: int | None  # None: no HTTP answer (connection refused, timeout, TLS)
    detail: str

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def permanent(self) -> bool:
        """The collector will never take this report as it is (not auth: that can be fixed)."""
        return self.status in (400, 413, 415, 422)


class ReportSender:
    """POST one report body to the collector with the agent's token."""

    def __init__(self, url: str, token_file: Path | None, timeout: float,
                 ca_file: Path | None = None) -> None:
        self._url = url.rstrip("/") + "/api/v1/reports"
        self._token_file = token_file
        self._timeout = timeout
        self._ca_file = ca_file
        self._context: Any = None

    def _token(self) -> str | None:
        if self._token_file is None:
            return None
        try:
            return self._token_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            log.error("cannot read the token file %s: %s", self._token_file, exc.strerror)
            return None

    def _ssl_context(self) -> Any:
        if self._context is None and self._url.startswith("https://"):
            import ssl  # only when TLS is used: ssl alone costs ~15 MB of RSS

            self._context = ssl.create_default_context(
                cafile=str(self._ca_file) if self._ca_file else None)
        return self._context

    def send(self, body: bytes) -> SendResult:
        headers = {"Content-Type": "application/json", "User-Agent": "runwatch-agent"}
        if len(body) > _GZIP_ABOVE_BYTES:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # The URL scheme is validated at config load (http or https only).
        request = urllib.request.Request(  # noqa: S310
            self._url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(  # noqa: S310
                    request, timeout=self._timeout, context=self._ssl_context()) as response:
                response.read()
                return SendResult(response.status, "ok")
        except urllib.error.HTTPError as exc:
            detail = exc.read(2048).decode("utf-8", "replace")
            return SendResult(exc.code, detail)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            return SendResult(None, f"{self._url}: {reason}")


class ReportShipper:
    """Send the spool's reports oldest first, in its own thread, with capped jittered backoff."""

    def __init__(self, spool: Spool, send: Callable[[bytes], SendResult],
                 min_backoff: float = 1.0, max_backoff: float = 60.0) -> None:
        self._spool = spool
        self._send = send
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str = ""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="shipper", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """A new report is in the spool."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def drain_once(self) -> int:
        """Send until the spool is empty or a send fails; return how many were delivered."""
        delivered = 0
        while not self._stop.is_set():
            item = self._spool.oldest()
            if item is None:
                return delivered
            seq, body = item
            result = self._send(body)
            if result.delivered:
                self._spool.ack(seq)
                delivered += 1
                if self.last_error:
                    log.info("collector reachable again; delivering spooled reports")
                    self.last_error = ""
                continue
            if result.permanent:
                log.error("collector refused report %d for good (%s: %s); kept in the spool's "
                          "rejected/ folder", seq, result.status, result.detail[:300])
                self._spool.reject(seq, f"{result.status} {result.detail}")
                continue
            message = (f"HTTP {result.status}: {result.detail[:300]}" if result.status
                       else result.detail)
            if message != self.last_error:
                hint = " (check the agent's token)" if result.status in (401, 403) else ""
                log.warning("cannot deliver report %d, will retry: %s%s", seq, message, hint)
                self.last_error = message
            raise RetryLater
        return delivered

    def _loop(self) -> None:
        backoff = self._min_backoff
        while not self._stop.is_set():
            try:
                self.drain_once()
                backoff = self._min_backoff
                self._wake.wait()
                self._wake.clear()
            except RetryLater:
                # Full jitter: a fleet that lost its collector does not come back in step.
                self._stop.wait(random.uniform(self._min_backoff, backoff))
                backoff = min(self._max_backoff, backoff * 2)


class RetryLater(Exception):
    """A send failed in a way that may pass: try again after a backoff."""
