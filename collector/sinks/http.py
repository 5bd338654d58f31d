"""The HTTP client every help desk adapter uses: timeouts, TLS, and errors turned into SinkError."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from collector.sinks.base import HttpSinkConfig, SinkError, error_for_status


class HttpClient:
    """A keep-alive client for one help desk. Errors never include credentials."""

    def __init__(self, sink: str, config: HttpSinkConfig,
                 auth: Callable[[], Mapping[str, str]] | httpx.Auth | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.sink = sink
        self.base_url = config.url.rstrip("/")
        self._auth_headers = auth if callable(auth) and not isinstance(auth, httpx.Auth) else None
        verify: bool | str = config.ca_file or config.verify_tls
        self._client = httpx.Client(
            base_url=self.base_url, timeout=float(config.timeout), verify=verify,
            auth=auth if isinstance(auth, httpx.Auth) else None, transport=transport,
            headers={"User-Agent": "runwatch", "Accept": "application/json"},
            follow_redirects=False)

    def request(self, method: str, path: str, *, json: Any = None,
                params: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None) -> httpx.Response:
        """Send a request; return a 2xx response or raise SinkError (retryable or final)."""
        merged = dict(self._auth_headers() if self._auth_headers else {})
        merged.update(headers or {})
        try:
            response = self._client.request(method, path, json=json, params=params,
                                            headers=merged)
        except httpx.TimeoutException:
            raise SinkError(f"{self.sink}: {method} {self.base_url}{path} timed out",
                            retryable=True) from None
        except httpx.TransportError as exc:
            raise SinkError(f"{self.sink}: {method} {self.base_url}{path} failed: "
                            f"{type(exc).__name__}: {exc}", retryable=True) from None
        if response.status_code >= 300:
            raise error_for_status(self.sink, method, f"{self.base_url}{path}",
                                   response.status_code, response.text,
                                   retry_after=response.headers.get("retry-after"))
        return response

    def close(self) -> None:
        self._client.close()
