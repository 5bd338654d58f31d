"""The HTTP client every help desk adapter uses: timeouts, TLS, and errors turned into SinkError.

Errors quote the help desk's answer, and proxies, WAFs and some desks echo the request in an
error page, credentials included. So every error this client raises, and httpx's own request
log line, goes through a Redactor that knows every credential the request carried.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit, urlunsplit

import httpx

from collector.sinks.contract import HttpSinkConfig, SinkError, error_for_status

REDACTED = "[redacted]"
# Headers besides the adapter's auth headers whose values are treated as credentials (a
# webhook's `headers:` may carry an Authorization or an API key).
_SECRET_NAME = re.compile(
    r"auth|token|key|secret|passw|signature|sig\b|cookie|session|credential|code", re.IGNORECASE
)
# Shorter values are left alone: blanking every `t` of a message protects no real secret.
_MIN_SECRET_CHARS = 4
_LONG_QUERY_VALUE = 16  # a query value this long is taken for a token whatever its name


class Redactor:
    """Replace every form of some credentials in a text with [redacted].

    The forms are the ones an echo can show: the value as sent, percent- and JSON-escaped, its
    base64, and for an Authorization value its parameter (`token=…`), the Basic pair
    `user:password` and the password alone.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        """Redact this value and its escaped and base64 forms."""
        if len(secret) < _MIN_SECRET_CHARS:
            return
        raw = secret.encode()
        self._forms |= {
            secret,
            quote(secret, safe=""),
            quote_plus(secret),
            json.dumps(secret)[1:-1],
            base64.b64encode(raw).decode(),
            base64.urlsafe_b64encode(raw).decode(),
        }

    def add_header(self, value: str) -> None:
        """Redact a credential header's value and the credentials inside it."""
        self.add(value)
        scheme, _, credentials = value.strip().partition(" ")
        credentials = credentials.strip()
        if not credentials:
            return
        self.add(credentials)
        if scheme.lower() == "basic":
            try:
                pair = base64.b64decode(credentials, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return
            self.add(pair)
            self.add(pair.partition(":")[2])
            return
        for param in credentials.split(","):  # e.g. Zammad's `Token token=…`
            name, equals, param_value = param.partition("=")
            if equals and name.strip():
                self.add(param_value.strip().strip('"'))

    def add_url(self, url: str) -> None:
        """Redact a URL's password (and the Basic pair httpx makes of it) and its query tokens."""
        parts = urlsplit(url)
        if parts.password is not None:
            self.add(parts.password)
            self.add(unquote(parts.password))
            pair = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
            self.add(pair)
            self.add(f"{parts.username or ''}:{parts.password}")
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if _SECRET_NAME.search(name) or len(value) >= _LONG_QUERY_VALUE:
                self.add(value)

    def __call__(self, text: str) -> str:
        # Longest first: a password inside a longer form must not break that form's match.
        for form in sorted(self._forms, key=len, reverse=True):
            if form in text:
                text = text.replace(form, REDACTED)
        return text


def display_url(url: str) -> str:
    """A URL as errors show it: without user info."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


class _HttpxLogFilter(logging.Filter):
    """Show httpx's `HTTP Request: METHOD URL` lines without user info and query values."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], httpx.URL):
            url = args[1]
            shown = url.copy_with(username=None, password=None, query=None)
            record.args = (args[0], f"{shown}{'?…' if url.query else ''}", *args[2:])
        return True


_httpx_log = logging.getLogger("httpx")
if not any(isinstance(f, _HttpxLogFilter) for f in _httpx_log.filters):
    _httpx_log.addFilter(_HttpxLogFilter())


class HttpClient:
    """A keep-alive client for one help desk. Errors never include credentials.

    `auth` returns the credential headers, read for each request (so a rotated secret file
    takes effect).
    """

    def __init__(
        self,
        sink: str,
        config: HttpSinkConfig,
        *,
        auth: Callable[[], Mapping[str, str]] | None = None,
        transport: httpx.BaseTransport | None = None,
        retry_statuses: frozenset[int] = frozenset(),
        retry_answer: Callable[[int, str], bool] | None = None,
    ) -> None:
        self.sink = sink
        self._retry_statuses = retry_statuses
        self._retry_answer = retry_answer
        self.base_url = display_url(config.url.rstrip("/"))
        self._auth_headers = auth
        self._url = config.url
        verify: bool | str = config.ca_file or config.verify_tls
        self._client = httpx.Client(
            base_url=config.url.rstrip("/"),
            timeout=float(config.timeout),
            verify=verify,
            transport=transport,
            headers={"User-Agent": "runwatch", "Accept": "application/json"},
            follow_redirects=False,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request; return a 2xx response or raise SinkError (retryable or final)."""
        auth = dict(self._auth_headers() if self._auth_headers else {})
        merged = {**auth, **(headers or {})}
        url = f"{self.base_url}{path}"
        try:
            response = self._client.request(method, path, json=json, params=params, headers=merged)
        except httpx.TimeoutException:
            redact = self._redactor(path, merged, auth)
            raise SinkError(
                redact(f"{self.sink}: {method} {url} timed out"), retryable=True
            ) from None
        except httpx.TransportError as exc:
            redact = self._redactor(path, merged, auth)
            raise SinkError(
                redact(f"{self.sink}: {method} {url} failed: {type(exc).__name__}: {exc}"),
                retryable=True,
            ) from None
        if response.status_code >= 300:
            raise error_for_status(
                self.sink,
                method,
                url,
                response.status_code,
                response.text,
                retry_after=response.headers.get("retry-after"),
                redact=self._redactor(path, merged, auth),
                retry_statuses=self._retry_statuses,
                retry_answer=self._retry_answer,
            )
        return response

    def _redactor(self, path: str, sent: Mapping[str, str], auth: Mapping[str, str]) -> Redactor:
        # Built only when a request failed: a success costs nothing.
        redactor = Redactor()
        redactor.add_url(self._url)
        redactor.add_url(path)  # a webhook URL's query, which may carry its token
        for name, value in sent.items():
            if name in auth or _SECRET_NAME.search(name):
                redactor.add_header(value)
        return redactor

    def close(self) -> None:
        self._client.close()
