"""The console's session: who signed in and how, carried in a signed cookie.

The cookie is HttpOnly and SameSite=Strict, signed with HMAC-SHA256 and a secret kept in the
data dir. The store keeps the live sessions by a hash of their ids (`session_key`), so that
signing out ends a session at every replica.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from collector.auth import ROLE_OPERATOR

COOKIE = "runwatch_session"


@dataclass(frozen=True, slots=True)
class Session:
    kind: str  # "token" or "user"
    name: str
    role: str
    fingerprint: str  # of the token or user entry it was made from
    expires: float
    csrf: str
    sid: str  # the session's id: the store keeps the live ones (see session_key)

    @property
    def can_change(self) -> bool:
        return self.role == ROLE_OPERATOR


class SessionCodec:
    """Sign and check session cookies with a secret kept in the data dir (HMAC-SHA256)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def from_file(cls, path: Path) -> SessionCodec:
        """The secret in `path`, created (0600) on first use. Replicas share one data dir's."""
        try:
            return cls(bytes.fromhex(path.read_text(encoding="ascii").strip()))
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            return cls(bytes.fromhex(path.read_text(encoding="ascii").strip()))
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secret.hex() + "\n")
        return cls(secret)

    def _mac(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()

    def encode(self, session: Session) -> str:
        body = (
            base64.urlsafe_b64encode(
                json.dumps(
                    [
                        session.kind,
                        session.name,
                        session.role,
                        session.fingerprint,
                        session.expires,
                        session.csrf,
                        session.sid,
                    ]
                ).encode()
            )
            .decode()
            .rstrip("=")
        )  # "=" would need quoting
        return f"{body}.{self._mac(body)}"

    def decode(self, value: str, now: float) -> Session | None:
        body, _, mac = value.partition(".")
        if not body or not hmac.compare_digest(mac, self._mac(body)):
            return None
        try:
            kind, name, role, fingerprint, expires, csrf, sid = json.loads(
                base64.urlsafe_b64decode(body.encode() + b"=" * (-len(body) % 4))
            )
            session = Session(
                str(kind),
                str(name),
                str(role),
                str(fingerprint),
                float(expires),
                str(csrf),
                str(sid),
            )
        except (ValueError, TypeError):
            return None
        return session if session.expires > now else None


def session_key(session: Session) -> str:
    """The key the store keeps a live session under: a hash of its id, so that a copy of the
    database holds nothing a cookie could be made from."""
    return hashlib.sha256(session.sid.encode()).hexdigest()
