"""HTTP check: one request to a URL, its status and time, and the TLS certificate's expiry."""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit

import msgspec

from checks.base import CheckFailed, CheckOptions, ProbeBase
from checks.schema import Measurement
from checks.settings import field_error

if TYPE_CHECKING:
    import http.client
    import socket
    import ssl

_log = logging.getLogger(__name__)

# Enough to time a page; a probe must not download a large file every minute.
MAX_BODY_BYTES = 1024 * 1024
_CHUNK = 64 * 1024
_METHOD = re.compile(r"[A-Z]+")

# OpenSSL verify codes (X509_V_ERR_*) -> what the user can do about them.
_VERIFY_REASONS = {
    2: "wrong CA: the issuer is not trusted",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "wrong CA: the certificate is self-signed",
    19: "wrong CA: a self-signed certificate is in the chain",
    20: "wrong CA: the issuer is not trusted",
    21: "wrong CA: the certificate cannot be verified",
    62: "hostname mismatch",
    64: "hostname mismatch: the certificate is not for this IP address",
}
_VERIFY_ADVICE = {
    "wrong CA": "set ca_file to the CA that signed the server's certificate",
    "hostname mismatch": "use a host name in `url` that the certificate is issued for",
    "certificate has expired": "renew the server's certificate",
    "certificate is not yet valid": "check the clocks of the server and the agent",
}


class HttpOptions(CheckOptions, tag="http", frozen=True):
    """What to request, and what counts as up."""

    url: str  # http:// or https://; redirects are reported, not followed
    method: str = "GET"
    expect_status: list[int] = msgspec.field(default_factory=list)  # empty: any 2xx or 3xx
    ca_file: str | None = None  # PEM bundle to verify https against instead of the system's
    verify_tls: bool = True
    headers: dict[str, str] = msgspec.field(default_factory=dict)

    default_timeout: ClassVar[float] = 10.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise field_error("url", f"expected an http:// or https:// URL, got {self.url!r}")
        if parts.username is not None or parts.password is not None:
            # The URL is a label and goes into logs; credentials belong in `headers`.
            raise field_error("url", "must not hold credentials; send them in `headers`")
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise field_error("url", str(exc)) from None
        if not _METHOD.fullmatch(self.method):
            raise field_error("method", f"expected an upper-case HTTP method, got {self.method!r}")
        for status in self.expect_status:
            if not 100 <= status <= 599:
                raise field_error("expect_status", f"{status} is not an HTTP status code")


def verify_failure_reason(exc: ssl.SSLCertVerificationError) -> str:
    """Say why certificate verification failed: wrong CA, hostname mismatch, expired, ..."""
    return _VERIFY_REASONS.get(exc.verify_code, exc.verify_message or str(exc))


def certificate_not_after(sock: ssl.SSLSocket, verified: bool) -> float | None:
    """Return the peer certificate's notAfter as Unix time, or None if it cannot be read."""
    import ssl

    if verified:
        decoded = sock.getpeercert()
        not_after = decoded.get("notAfter") if decoded else None
        return ssl.cert_time_to_seconds(str(not_after)) if not_after else None
    # Unverified, the ssl module decodes nothing; parse the DER if cryptography is at hand.
    der = sock.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        from cryptography import x509
    except ImportError:
        _log.debug("http check: cryptography is not installed; no expiry for unverified TLS")
        return None
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        _log.debug("http check: cannot parse the server certificate: %s", exc)
        return None
    return float(certificate.not_valid_after_utc.timestamp())  # cryptography >= 42


class HttpCheck(ProbeBase[HttpOptions]):
    """Request the URL once and report whether it answered as expected, and how fast.

    A connection or TLS failure is `http_up 0` with no other series. `http_response_seconds`
    runs from connect to the end of the body (read up to MAX_BODY_BYTES). For https, the
    server certificate's expiry is reported whenever the request succeeded.
    """

    def _prepare(self) -> None:
        self._parts = urlsplit(self._options.url)
        self._labels = {"url": self._options.url}
        # The whole request, connect to body, ends a little before the runner gives up, so a
        # slow server reads as down, not hung.
        self._budget = self._timeout * 0.9
        self._headers = {"User-Agent": "runwatch", "Connection": "close", **self._options.headers}
        self._context: ssl.SSLContext | None = None
        self._tls_problem: str | None = None  # warned about once, until it changes or clears

    def collect(self) -> list[Measurement]:
        """Make the request and return up, status, response time and certificate expiry."""
        import http.client
        import ssl

        connection = self._connection()
        started = self._monotonic()
        deadline = started + self._budget
        try:
            connection.connect()
        except ssl.SSLCertVerificationError as exc:
            self._warn_tls(verify_failure_reason(exc), exc)
            connection.close()
            return [self._measurement("http_up", 0, self._clock())]
        except OSError as exc:  # refused, unreachable, timed out, TLS handshake errors
            _log.info("http check: cannot connect to %s: %s", self._options.url, exc)
            connection.close()
            return [self._measurement("http_up", 0, self._clock())]
        self._tls_problem = None
        sock = connection.sock  # the response reads from it after the connection lets go
        response: http.client.HTTPResponse | None = None
        try:
            not_after = None
            if isinstance(sock, ssl.SSLSocket):
                not_after = certificate_not_after(sock, self._options.verify_tls)
            self._wait_until(deadline, sock)
            connection.request(self._options.method, self._target(), headers=self._headers)
            self._wait_until(deadline, sock)
            response = connection.getresponse()
            remaining = MAX_BODY_BYTES
            while remaining > 0:
                self._wait_until(deadline, sock)
                chunk = response.read1(min(_CHUNK, remaining))  # one receive at most
                if not chunk:
                    break
                remaining -= len(chunk)
            elapsed = self._monotonic() - started
            status = response.status
        except (OSError, http.client.HTTPException) as exc:
            _log.info("http check: %s %s failed: %s", self._options.method, self._options.url, exc)
            return [self._measurement("http_up", 0, self._clock())]
        finally:
            # The response holds the socket past the connection's close: a run given up must
            # not leave it open until the garbage collector (or a logged traceback) lets go.
            if response is not None:
                response.close()
            connection.close()
        now = self._clock()
        expected = (
            status in self._options.expect_status
            if self._options.expect_status
            else 200 <= status < 400
        )
        out = [
            self._measurement("http_up", expected, now),
            self._measurement("http_status_code", status, now),
            self._measurement("http_response_seconds", elapsed, now, "seconds"),
        ]
        if not_after is not None:
            out.append(
                self._measurement(
                    "http_tls_cert_expiry_timestamp_seconds", not_after, now, "seconds"
                )
            )
            out.append(
                self._measurement("http_tls_cert_days_left", (not_after - now) / 86400, now, "days")
            )
        return out

    def _connection(self) -> http.client.HTTPConnection:
        import http.client

        host, port = self._parts.hostname or "", self._parts.port
        if self._parts.scheme == "http":
            return http.client.HTTPConnection(host, port, timeout=self._budget)
        return http.client.HTTPSConnection(
            host, port, timeout=self._budget, context=self._tls_context()
        )

    def _wait_until(self, deadline: float, sock: socket.socket | None) -> None:
        """Let the next send or receive wait only until the run's deadline (monotonic)."""
        left = deadline - self._monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete answer within {self._budget:g}s")
        if sock is not None and sock.fileno() != -1:  # closed once the whole body is read
            sock.settimeout(left)

    def _tls_context(self) -> ssl.SSLContext:
        import ssl

        if self._context is None:
            if not self._options.verify_tls:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                try:
                    context = ssl.create_default_context(cafile=self._options.ca_file)
                except (OSError, ssl.SSLError) as exc:
                    raise CheckFailed(
                        f"cannot load ca_file {self._options.ca_file}: {exc}; point ca_file "
                        "at a readable PEM bundle"
                    ) from None
            self._context = context
        return self._context

    def _target(self) -> str:
        path = self._parts.path or "/"
        return f"{path}?{self._parts.query}" if self._parts.query else path

    def _warn_tls(self, reason: str, exc: ssl.SSLCertVerificationError) -> None:
        # A broken certificate stays broken for a while; say it once, until the reason changes.
        level = logging.DEBUG if reason == self._tls_problem else logging.WARNING
        self._tls_problem = reason
        advice = next((tip for key, tip in _VERIFY_ADVICE.items() if reason.startswith(key)), "")
        _log.log(
            level,
            "http check: TLS verification of %s failed: %s (%s)%s",
            self._options.url,
            reason,
            exc.verify_message,
            f"; {advice}" if advice else "",
        )
