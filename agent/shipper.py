"""Ship spooled reports to the collector in order, retrying with backoff; never drop one."""

from __future__ import annotations

import json
import logging
import random
import socket
import stat
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from agent.spool import Spool

log = logging.getLogger(__name__)

# A usual report (a few KiB) goes plain: compressing it costs agent and collector more CPU than
# the bytes are worth. Big reports, and a backlog's, still go gzipped.
_GZIP_ABOVE_BYTES = 16 * 1024
_MAX_ANSWER_BYTES = 1 << 20  # the collector answers in a few hundred bytes


@dataclass(frozen=True, slots=True)
class SendResult:
    status: int | None  # None: no HTTP answer (connection refused, timeout, TLS)
    detail: str
    retry_after_seconds: float | None = None  # the collector's Retry-After (429, 503)
    # What the collector did not take from an accepted report (a limit it ran into): each a
    # dict with `code`, `message` and `dropped`.
    warnings: tuple[dict[str, Any], ...] = ()

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def permanent(self) -> bool:
        """The collector will never take this report as it is (not auth: that can be fixed)."""
        return self.status in (400, 413, 415, 422)

    @property
    def retired(self) -> bool:
        """The collector refuses every report of this host: an operator retired it."""
        if self.status != 409:
            return False
        try:
            return bool(json.loads(self.detail).get("error") == "retired")
        except (ValueError, AttributeError):
            return False


class ReportSender:
    """POST one report body to the collector with the agent's token."""

    # OpenSSL's X509_V_ERR_* codes, grouped by what the admin has to change.
    _UNTRUSTED: ClassVar[frozenset[int]] = frozenset(
        {
            2,  # UNABLE_TO_GET_ISSUER_CERT
            18,  # DEPTH_ZERO_SELF_SIGNED_CERT
            19,  # SELF_SIGNED_CERT_IN_CHAIN
            20,  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
            21,  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
            27,  # CERT_UNTRUSTED
        }
    )
    _NAME_MISMATCH: ClassVar[frozenset[int]] = frozenset({62, 64})  # HOSTNAME, IP_ADDRESS
    _DATES: ClassVar[dict[int, str]] = {
        9: "certificate not yet valid: check the clocks of agent and collector",
        10: "certificate expired: the collector needs a renewed certificate",
    }

    def __init__(
        self, url: str, token_file: Path | None, timeout: float, ca_file: Path | None = None
    ) -> None:
        self._url = url.rstrip("/") + "/api/v1/reports"
        self._token_file = token_file
        self._timeout = timeout
        self._ca_file = ca_file
        self._context: Any = None
        self._warn_if_token_exposed()

    def _warn_if_token_exposed(self) -> None:
        if self._token_file is None:
            return
        try:
            mode = stat.S_IMODE(self._token_file.stat().st_mode)
        except OSError:
            return  # the first send says what is wrong with it
        if mode & 0o077:
            log.warning(
                "the token file %s is open to other users (mode %04o); restrict it "
                "with: chmod 600 %s",
                self._token_file,
                mode,
                self._token_file,
            )

    def _token(self) -> str | None:
        if self._token_file is None:
            return None
        try:
            return self._token_file.read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            log.error("cannot read the token file %s: %s", self._token_file, exc.strerror)
            return None

    def _new_context(self, check_hostname: bool = True) -> Any:
        import ssl  # only when TLS is used: the default context loads the CA bundle (~2 MB)

        context = ssl.create_default_context(cafile=str(self._ca_file) if self._ca_file else None)
        if self._ca_file:
            # Trust what ca_file holds even if it is an intermediate or the collector's own
            # certificate, as Python 3.13 does by default.
            context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        context.check_hostname = check_hostname
        return context

    def _ssl_context(self) -> Any:
        if self._context is None and self._url.startswith("https://"):
            self._context = self._new_context()
        return self._context

    def send(self, body: bytes) -> SendResult:
        headers = {"Content-Type": "application/json", "User-Agent": "runwatch-agent"}
        if len(body) > _GZIP_ABOVE_BYTES:
            import gzip  # only big reports and backlogs are compressed

            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if not self._url.startswith("https://"):
            return self._post_plain(body, headers)
        import http.client
        import urllib.error
        import urllib.request

        try:
            context = self._ssl_context()
        except OSError as exc:  # ssl.SSLError is an OSError too
            return SendResult(
                None, f"cannot load collector.ca_file {self._ca_file}: {exc.strerror or exc}"
            )
        # The URL scheme is validated at config load (http or https only).
        request = urllib.request.Request(  # noqa: S310
            self._url, data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 -- scheme checked: http or https only  # nosec B310
                request, timeout=self._timeout, context=context
            ) as response:
                answer = response.read(_MAX_ANSWER_BYTES)
                return SendResult(response.status, "ok", warnings=answer_warnings(answer))
        except urllib.error.HTTPError as exc:
            detail = exc.read(2048).decode("utf-8", "replace")
            return SendResult(exc.code, detail, retry_after(exc.headers.get("Retry-After")))
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            return SendResult(None, f"{self._url}: {self._explain(reason)}")

    def _post_plain(self, body: bytes, headers: dict[str, str]) -> SendResult:
        """POST over plain HTTP/1.1 on a socket.

        The standard library's http.client and urllib import ssl, which alone costs an agent
        about 6 MB of memory; a plain http:// collector should not make every agent pay it.
        """
        parts = urllib.parse.urlsplit(self._url)
        lines = [
            f"POST {parts.path or '/'} HTTP/1.1",
            f"Host: {parts.netloc}",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{key}: {value}" for key, value in headers.items()),
        ]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        received = bytearray()
        try:
            with socket.create_connection(
                (parts.hostname or "", parts.port or 80), timeout=self._timeout
            ) as sock:
                sock.sendall(request)
                while len(received) < _MAX_ANSWER_BYTES:
                    data = sock.recv(65536)
                    if not data:
                        break
                    received += data
        except OSError as exc:
            return SendResult(None, f"{self._url}: {exc.strerror or exc}")
        head, _, payload = bytes(received).partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        words = status_line.split(" ", 2)
        if len(words) < 2 or not words[0].startswith("HTTP/") or not words[1].isdigit():
            # What a collector that serves TLS does with a plain HTTP request: no HTTP answer.
            seen = f"got {status_line[:60]!r}" if status_line else "the connection closed"
            return SendResult(
                None,
                f"{self._url}: no HTTP answer ({seen}); if the collector "
                "serves TLS, collector.url must start with https://",
            )
        status = int(words[1])
        if b"transfer-encoding: chunked" in head.lower():
            payload = _unchunk(payload)
        if 200 <= status < 300:
            return SendResult(status, "ok", warnings=answer_warnings(payload))
        wait = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"retry-after":
                wait = retry_after(value.decode("latin-1"))
        return SendResult(status, payload[:2048].decode("utf-8", "replace"), wait)

    def _explain(self, reason: object) -> str:
        """Say which TLS check failed and which setting to look at."""
        import ssl

        if isinstance(reason, ssl.SSLCertVerificationError):
            return self._explain_certificate(reason.verify_code, reason.verify_message)
        if isinstance(reason, ssl.SSLError) and reason.reason == "WRONG_VERSION_NUMBER":
            return (
                f"TLS handshake failed ({reason}): does the collector serve TLS? "
                "(check collector.url)"
            )
        return str(reason)

    def _explain_certificate(self, code: int, message: str) -> str:
        if code in self._UNTRUSTED:
            trusted = (
                f"a CA in {self._ca_file}"
                if self._ca_file
                else "a system CA, and no ca_file is set"
            )
            return (
                f"certificate not trusted: {message}; it is not signed by {trusted} "
                "(check collector.ca_file)"
            )
        if code in self._NAME_MISMATCH:
            host = urllib.parse.urlsplit(self._url).hostname
            return (
                f"host name mismatch: the certificate is for {self._certificate_names()}, "
                f"not {host} (check collector.url)"
            )
        return self._DATES.get(code, f"certificate rejected: {message}")

    def _certificate_names(self) -> str:
        """Read the names in the collector's certificate, over a connection that ignores them."""
        parts = urllib.parse.urlsplit(self._url)
        host = parts.hostname or ""
        try:
            with (
                socket.create_connection((host, parts.port or 443), self._timeout) as raw,
                self._new_context(check_hostname=False).wrap_socket(
                    raw, server_hostname=host
                ) as tls,
            ):
                cert = tls.getpeercert() or {}
        except OSError as exc:
            return f"other names (cannot read them: {exc})"
        names = [
            value for kind, value in cert.get("subjectAltName", ()) if kind in ("DNS", "IP Address")
        ]
        if not names:
            names = [
                value
                for rdn in cert.get("subject", ())
                for key, value in rdn
                if key == "commonName"
            ]
        return ", ".join(str(name) for name in names) or "no host name at all"


# Never wait longer than this on the collector's word: a wrong header must not silence an agent.
_MAX_RETRY_AFTER_SECONDS = 3600.0


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header in its delay form; None if absent or not a number."""
    if value is None or not value.strip().isdigit():
        return None  # the HTTP-date form is not used by the collector
    return min(float(value.strip()), _MAX_RETRY_AFTER_SECONDS)


def answer_warnings(payload: bytes) -> tuple[dict[str, Any], ...]:
    """The `warnings` of an accepted report's answer; none if it has none or is not JSON."""
    if b'"warnings"' not in payload:
        return ()
    try:
        answer = json.loads(payload)
    except ValueError:
        return ()
    items = answer.get("warnings") if isinstance(answer, dict) else None
    if not isinstance(items, list):
        return ()
    return tuple(
        {
            "code": str(item.get("code", ""))[:100],
            "message": str(item.get("message", ""))[:1000],
            "dropped": item.get("dropped", 0),
        }
        for item in items[:20]
        if isinstance(item, dict)
    )


def _unchunk(payload: bytes) -> bytes:
    """Decode a chunked HTTP body (only error texts are read from it)."""
    out = bytearray()
    while payload:
        size_line, _, rest = payload.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        payload = rest[size + 2 :]
    return bytes(out)


class ReportShipper:
    """Send the spool's reports oldest first, in its own thread, with capped jittered backoff.

    A backlog (after an outage or a restart) goes out at most one report every
    `replay_gap_seconds`. When the collector answers again after an outage, the rest of the
    backlog first waits a random 0 to `replay_jitter_seconds`, so that a fleet whose collector
    comes back does not arrive all at once. Both may be changed while it runs (on reload).
    """

    def __init__(
        self,
        spool: Spool,
        send: Callable[[bytes], SendResult],
        min_backoff: float = 1.0,
        max_backoff: float = 60.0,
        *,
        replay_gap_seconds: float = 0.0,
        replay_jitter_seconds: float = 0.0,
    ) -> None:
        self._spool = spool
        self._send = send
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self.replay_gap_seconds = replay_gap_seconds
        self.replay_jitter_seconds = replay_jitter_seconds
        self._wake = threading.Event()
        self._finishing = threading.Event()  # stop(): deliver what is pending, then end
        self._stop = threading.Event()  # end now, even in the middle of a backlog
        self._thread: threading.Thread | None = None
        self._outage = False  # a send failed, and none has succeeded since
        self.last_error: str = ""
        self._warned: frozenset[str] = frozenset()  # the collector's warning codes, as logged
        self._retired = False  # the collector said this host is retired; not logged again

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="shipper", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """A new report is in the spool."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is pending for up to `timeout` seconds, then stop; the rest stays spooled.

        During an outage that is one more attempt at once, not a wait for the backoff.
        """
        self._finishing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._stop.set()

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
                if self._retired:
                    log.info("the collector takes this host's reports again (report %d)", seq)
                    self._retired = False
                self._spool.ack(seq)
                delivered += 1
                self._note_warnings(seq, result.warnings)
                self._pace()
                continue
            if result.retired:
                # Neither spooled nor retried: each new report asks again, so the host comes
                # back by itself once an operator restores it (or a deploy does).
                if not self._retired:
                    log.error(
                        "the collector refuses this host's reports: %s. Reports are dropped "
                        "until the host is restored (logged once)",
                        _message(result.detail),
                    )
                    self._retired = True
                self._spool.ack(seq)
                continue
            if result.permanent:
                log.error(
                    "collector refused report %d for good (%s: %s); kept in the spool's "
                    "rejected/ folder",
                    seq,
                    result.status,
                    result.detail[:300],
                )
                self._spool.reject(seq, f"{result.status} {result.detail}")
                continue
            message = (
                f"HTTP {result.status}: {result.detail[:300]}" if result.status else result.detail
            )
            if message != self.last_error:
                hint = " (check the agent's token)" if result.status in (401, 403) else ""
                log.warning("cannot deliver report %d, will retry: %s%s", seq, message, hint)
                self.last_error = message
            self._outage = True
            raise RetryLater(result.retry_after_seconds)
        return delivered

    def _note_warnings(self, seq: int, warnings: tuple[dict[str, Any], ...]) -> None:
        """Log each of the collector's warnings when it starts, and when it stops: once per
        condition, not on every report."""
        codes = frozenset(str(warning["code"]) for warning in warnings)
        for warning in warnings:
            if warning["code"] not in self._warned:
                log.warning(
                    "the collector took report %d, but not all of it (%s): %s",
                    seq,
                    warning["code"],
                    warning["message"],
                )
        for code in sorted(self._warned - codes):
            log.info("the collector's warning %s no longer applies (report %d)", code, seq)
        self._warned = codes

    def _pace(self) -> None:
        """After a delivery: hold back the next one while a backlog is replayed."""
        backlog = self._spool.stats().reports
        if self._outage:
            self._outage = False
            self.last_error = ""
            if backlog:
                delay = random.uniform(0.0, self.replay_jitter_seconds)
                rate = (
                    f"at most {1 / self.replay_gap_seconds:g} a second"
                    if self.replay_gap_seconds > 0
                    else "unpaced"
                )
                log.info(
                    "collector reachable again; replaying %d spooled report(s) in %.1fs, %s",
                    backlog,
                    delay,
                    rate,
                )
                self._stop.wait(delay)
                return
            log.info("collector reachable again")
        if backlog and self.replay_gap_seconds > 0:
            self._stop.wait(self.replay_gap_seconds)

    def _loop(self) -> None:
        backoff = self._min_backoff
        while not self._stop.is_set():
            # stop() during a failing attempt still gets one attempt that began after it.
            final_attempt = self._finishing.is_set()
            try:
                self.drain_once()
            except RetryLater as later:
                if final_attempt:
                    return  # stopping: what is left stays spooled for the next start
                if later.after_seconds is not None:
                    # The collector said when (429: over this token's rate limit): come back
                    # then, with a little jitter, and keep the report in the spool meanwhile.
                    self._finishing.wait(later.after_seconds + random.uniform(0.0, 1.0))
                    continue
                # Full jitter: a fleet that lost its collector does not come back in step.
                # stop() cuts the wait short.
                self._finishing.wait(random.uniform(self._min_backoff, backoff))
                backoff = min(self._max_backoff, backoff * 2)
                continue
            backoff = self._min_backoff
            if self._finishing.is_set():
                return
            self._wake.wait()
            self._wake.clear()


def _message(detail: str) -> str:
    """The `message` of the collector's JSON error, else the answer itself (cut short)."""
    try:
        return str(json.loads(detail)["message"])[:500]
    except (ValueError, KeyError, TypeError):
        return detail[:300]


class RetryLater(Exception):
    """A send failed in a way that may pass: try again after a backoff, or `after_seconds`."""

    def __init__(self, after_seconds: float | None = None) -> None:
        super().__init__(after_seconds)
        self.after_seconds = after_seconds
