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


def _der_item(der: bytes, at: int) -> tuple[int, int, int]:
    """Return (tag, start of content, end of content) of the DER item at `at`."""
    if at + 2 > len(der):
        raise ValueError("truncated DER")
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:  # long form: the next (length & 0x7F) bytes hold the length
        size = length & 0x7F
        if not 0 < size <= 4 or at + size > len(der):
            raise ValueError("bad DER length")
        length = int.from_bytes(der[at : at + size], "big")
        at += size
    if at + length > len(der):
        raise ValueError("truncated DER")
    return tag, at, at + length


def der_not_after(der: bytes) -> float:
    """Return a DER X.509 certificate's notAfter as Unix time; ValueError if it is malformed.

    The ssl module decodes a certificate only once it is verified, and an expired or untrusted
    one is exactly the certificate whose expiry matters; this reads the one field it needs
    without a heavy import.
    """
    import calendar

    _, cert, _ = _der_item(der, 0)  # Certificate
    _, at, _ = _der_item(der, cert)  # TBSCertificate
    tag, _, end = _der_item(der, at)
    if tag == 0xA0:  # [0] version, absent for v1
        at = end
    for _ in range(3):  # serialNumber, signature, issuer
        _, _, at = _der_item(der, at)
    _, validity, _ = _der_item(der, at)
    _, _, at = _der_item(der, validity)  # notBefore
    tag, start, end = _der_item(der, at)  # notAfter
    text = der[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ; RFC 5280: YY < 50 is 20YY
        year = int(text[:2])
        text = f"{year + (2000 if year < 50 else 1900)}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError(f"notAfter has DER tag {tag:#x}, not a time")
    if not re.fullmatch(r"\d{14}Z", text):
        raise ValueError(f"unexpected notAfter {text!r}")
    parts = [int(text[i:j]) for i, j in ((0, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14))]
    return float(calendar.timegm((*parts, 0, 0, 0)))


def certificate_not_after(sock: ssl.SSLSocket) -> float | None:
    """Return the peer certificate's notAfter as Unix time, or None if it cannot be read."""
    der = sock.getpeercert(binary_form=True)
    if not der:
        return None
    try:
        return der_not_after(der)
    except (ValueError, UnicodeDecodeError) as exc:
        _log.debug("http check: cannot read the server certificate's expiry: %s", exc)
        return None


class HttpCheck(ProbeBase[HttpOptions]):
    """Request the URL once and report whether it answered as expected, and how fast.

    A connection failure is `http_up 0` with no other series. `http_response_seconds` runs
    from connect to the end of the body (read up to MAX_BODY_BYTES). For https, the server
    certificate's expiry is reported whenever the server presented one, also when it failed
    verification (expired, untrusted, for another name): that is when its expiry matters
    most. Why a request failed is in `last_output`, which reaches the call.
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
        self.last_output: str | None = None

    def collect(self) -> list[Measurement]:
        """Make the request and return up, status, response time and certificate expiry."""
        import http.client
        import ssl

        self.last_output = None
        connection = self._connection()
        started = self._monotonic()
        deadline = started + self._budget
        try:
            connection.connect()
        except OSError as exc:  # refused, unreachable, timed out, TLS handshake errors
            connection.close()
            return self._not_connected(exc, deadline)
        self._tls_problem = None
        sock = connection.sock  # the response reads from it after the connection lets go
        response: http.client.HTTPResponse | None = None
        try:
            not_after = None
            if isinstance(sock, ssl.SSLSocket):
                not_after = certificate_not_after(sock)
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
            self.last_output = f"{self._options.method} {self._options.url} failed: {exc}"
            now = self._clock()
            return [self._measurement("http_up", 0, now), *self._expiry(not_after, now)]
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
        if not expected:
            self.last_output = f"{self._options.method} {self._options.url} answered {status}"
        out = [
            self._measurement("http_up", expected, now),
            self._measurement("http_status_code", status, now),
            self._measurement("http_response_seconds", elapsed, now, "seconds"),
        ]
        return out + self._expiry(not_after, now)

    def _not_connected(self, exc: OSError, deadline: float) -> list[Measurement]:
        """Say why the connection failed; measure a certificate that failed verification."""
        import ssl

        if isinstance(exc, ssl.SSLCertVerificationError):
            self.last_output = self._warn_tls(verify_failure_reason(exc), exc)
            not_after = self._unverified_not_after(deadline)
            now = self._clock()
            return [self._measurement("http_up", 0, now), *self._expiry(not_after, now)]
        _log.info("http check: cannot connect to %s: %s", self._options.url, exc)
        self.last_output = f"cannot connect to {self._options.url}: {exc}"
        return [self._measurement("http_up", 0, self._clock())]

    def _expiry(self, not_after: float | None, now: float) -> list[Measurement]:
        """The certificate's expiry and days left (negative once expired), if one was read."""
        if not_after is None:
            return []
        figures = [
            ("http_tls_cert_expiry_timestamp_seconds", not_after, "seconds"),
            ("http_tls_cert_days_left", (not_after - now) / 86400, "days"),
        ]
        return self._measurements(figures, now)

    def _unverified_not_after(self, deadline: float) -> float | None:
        """Connect again without verification, to read the expiry of a rejected certificate."""
        import socket
        import ssl

        left = deadline - self._monotonic()
        if left <= 0:
            return None
        host, port = self._parts.hostname or "", self._parts.port or 443
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with (
                socket.create_connection((host, port), timeout=left) as raw,
                context.wrap_socket(raw, server_hostname=host) as sock,
            ):
                return certificate_not_after(sock)
        except OSError as exc:
            _log.debug("http check: cannot fetch the certificate of %s: %s", self._options.url, exc)
            return None

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

    def _warn_tls(self, reason: str, exc: ssl.SSLCertVerificationError) -> str:
        """Log a failed verification (once, until the reason changes); return what to say."""
        level = logging.DEBUG if reason == self._tls_problem else logging.WARNING
        self._tls_problem = reason
        advice = next((tip for key, tip in _VERIFY_ADVICE.items() if reason.startswith(key)), "")
        text = (
            f"TLS verification of {self._options.url} failed: {reason} ({exc.verify_message})"
            f"{'; ' + advice if advice else ''}"
        )
        _log.log(level, "http check: %s", text)
        return text
