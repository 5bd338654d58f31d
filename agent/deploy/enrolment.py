"""The collector's API as deploy uses it: enrol and revoke agent tokens, and see reports arrive."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from agent.deploy.errors import CollectorError, DeployError


def token_fingerprint(token: str) -> str:
    """The fingerprint the collector shows for a token (the first 16 hex digits of its hash)."""
    return hashlib.sha256(token.strip().encode()).hexdigest()[:16]


def read_operator_token(path: Path) -> str:
    """Read the operator token; refuse a file that others can read."""
    try:
        mode = path.stat().st_mode & 0o077
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise DeployError(
            f"cannot read the operator token file {path}: {exc.strerror}; create "
            "one with `runwatch token add --operator NAME` on the collector"
        ) from None
    if mode:
        raise DeployError(f"the operator token file {path} can be read by others; chmod 600 {path}")
    if not token:
        raise DeployError(f"the operator token file {path} is empty")
    return token


class CollectorClient:
    """A thread-safe client for the collector's operator and read endpoints."""

    def __init__(
        self,
        url: str,
        operator_token: str,
        *,
        ca_file: Path | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        verify: Any = str(ca_file) if ca_file else True
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            verify=verify,
            transport=transport,
            headers={"Authorization": f"Bearer {operator_token}"},
        )

    def _call(
        self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> httpx.Response:
        target = f"{self.url}{path}"
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise CollectorError(
                f"cannot reach the collector at {self.url}: {exc}", url=target, status=None
            ) from None
        if response.status_code not in ok:
            try:
                message = response.json().get("message") or response.text[:200]
            except ValueError:
                message = response.text[:200]
            hint = (
                " (check the inventory's collector.operator_token_file)"
                if response.status_code == 401
                else ""
            )
            raise CollectorError(
                f"{method} {target}: HTTP {response.status_code}: {message}{hint}",
                url=target,
                status=response.status_code,
            )
        return response

    def check_operator(self) -> None:
        """Fail early, before any host is touched, if the operator token is refused."""
        self._call("GET", "/api/v1/tokens")

    def token_fingerprint(self, host: str) -> str | None:
        """The fingerprint of the host's token at the collector, or None if it has none."""
        response = self._call("GET", f"/api/v1/tokens/{host}", ok=(200, 404))
        if response.status_code == 404:
            return None
        fingerprint: str = response.json()["fingerprint"]
        return fingerprint

    def enrol(self, host: str, *, replace: bool) -> str:
        """Create the host's agent token and return it (the collector keeps only its hash)."""
        response = self._call(
            "POST", "/api/v1/tokens", ok=(201,), json={"host": host, "replace": replace}
        )
        token: str = response.json()["token"]
        return token

    def revoke(self, host: str) -> bool:
        """Revoke the host's token; return whether it had one."""
        return self._call("DELETE", f"/api/v1/tokens/{host}", ok=(200, 404)).status_code == 200

    def retire(self, host: str, reason: str) -> bool:
        """Retire the host at the collector (its calls resolved, its reports refused); return
        whether it did now (False: it never reported, or was retired already)."""
        response = self._call(
            "POST",
            f"/api/v1/hosts/{quote(host, safe='')}/retire",
            ok=(200, 404, 409),
            json={"reason": reason},
        )
        return response.status_code == 200

    def restore(self, host: str, reason: str) -> bool:
        """Take a retired host back at the collector; return whether it was retired."""
        response = self._call(
            "POST",
            f"/api/v1/hosts/{quote(host, safe='')}/restore",
            ok=(200, 409),
            json={"reason": reason},
        )
        return response.status_code == 200

    def host_record(self, host: str) -> dict[str, Any] | None:
        """What the collector knows of the host (last report, agent version), or None."""
        records = self._call("GET", "/api/v1/hosts", params={"host": host}).json()
        for record in records:
            if record["host"] == host:
                found: dict[str, Any] = record
                return found
        return None

    def close(self) -> None:
        self._http.close()
