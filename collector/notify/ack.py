"""Signed, expiring, one-use links that acknowledge a call from its notification.

A link names the call, the person it was sent to (or the channel, when no one person owns
it), when it expires and its own id, and is signed with HMAC-SHA256 under a key the collector
keeps. The token is `<body>.<mac>`: the body is base64url JSON, the mac base64url of
HMAC-SHA256(key, "runwatch-ack-link" NUL body). Any key in the ring verifies; the first signs,
so a key can be rotated while the links already sent still work (`previous_secrets`).

The same notification sent again (a retry after a crash) carries the same link: its id comes
from the notification's own key and its expiry from when it happened. The store remembers
the ids of used links (`use_ack_link`), which makes each link work once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.notify.config import AckLinksConfig, NotifyConfig

# The file the generated key lives in, in the data dir.
KEY_FILE = "ack-links.secret"
_LINK_VERSION = 1
_MAC_CONTEXT = b"runwatch-ack-link\x00"
_CSRF_CONTEXT = b"runwatch-ack-csrf\x00"
# Events whose notification carries a link: a resolved call needs no acknowledging.
LINKED_EVENTS = frozenset({"open", "severity", "escalation"})
# What the audit log names as the way a person acknowledged from a link.
VIA = "notification link"


@dataclass(frozen=True, slots=True)
class AckLink:
    """What a link says: which call, for whom, until when, and its own id."""

    call_id: int
    recipient: str
    expires_at: float  # Unix seconds
    link_id: str


class AckLinkRefused(Exception):
    """A link that cannot be used: `status` 403 (tampered, wrong key) or 410 (expired, used)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))


def token_hint(token: str) -> str:
    """What logs may say of a token: its first characters, never enough to use it."""
    return token[:8] + "…"


class AckLinkKeys:
    """Sign links with the first key and accept a link signed with any of them."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key")
        self._keys = tuple(keys)

    @classmethod
    def load(cls, config: AckLinksConfig, data_dir: Path) -> AckLinkKeys:
        """The configured keys, or the one generated (0600) in `data_dir` on first start."""
        previous = [s.read().encode() for s in config.previous_secrets]
        if config.secret is not None:
            return cls([config.secret.read().encode(), *previous])
        return cls([_generated_key(data_dir / KEY_FILE), *previous])

    def _mac(self, key: bytes, body: str) -> str:
        return _b64(hmac.new(key, _MAC_CONTEXT + body.encode("ascii"), hashlib.sha256).digest())

    def token(self, link: AckLink) -> str:
        """The signed token that carries `link`."""
        fields = [_LINK_VERSION, link.call_id, link.recipient, int(link.expires_at), link.link_id]
        body = _b64(json.dumps(fields, separators=(",", ":")).encode())
        return f"{body}.{self._mac(self._keys[0], body)}"

    def read(self, token: str, now: float) -> AckLink:
        """The link `token` carries; AckLinkRefused if it was changed, signed with another
        key, or has expired."""
        tampered = AckLinkRefused(
            403,
            "tampered",
            "This link is not valid: it was changed, cut short, or signed with a key this "
            "collector does not hold.",
        )
        body, dot, mac = token.rpartition(".")
        if not dot or not body or not mac or not body.isascii() or not mac.isascii():
            raise tampered
        if not any(hmac.compare_digest(mac, self._mac(key, body)) for key in self._keys):
            raise tampered
        try:
            version, call_id, recipient, expires_at, link_id = json.loads(_unb64(body))
            link = AckLink(int(call_id), str(recipient), float(expires_at), str(link_id))
        except (ValueError, TypeError, binascii.Error):
            raise tampered from None
        if version != _LINK_VERSION:
            raise tampered
        if now >= link.expires_at:
            raise AckLinkRefused(
                410,
                "expired",
                "This link has expired. Acknowledge the call in the console, or use the link "
                "in a newer message about it.",
            )
        return link

    def csrf(self, link: AckLink, nonce: str) -> str:
        """The confirm form's token: bound to the link and to the browser's nonce cookie."""
        material = _CSRF_CONTEXT + f"{link.link_id}\x00{nonce}".encode()
        return _b64(hmac.new(self._keys[0], material, hashlib.sha256).digest())

    def csrf_ok(self, link: AckLink, nonce: str, value: str) -> bool:
        return bool(nonce) and hmac.compare_digest(value.encode(), self.csrf(link, nonce).encode())


def _generated_key(path: Path) -> bytes:
    """The key in `path`, made (32 random bytes, hex, mode 0600) if it is not there yet.
    Replicas that share a data dir share it; delete the file to rotate (old links then fail)."""
    try:
        return path.read_text(encoding="ascii").strip().encode()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another replica made it first
        return path.read_text(encoding="ascii").strip().encode()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    return key.encode()


def recipients(config: NotifyConfig) -> dict[str, str]:
    """Channel -> the person it reaches, for channels that belong to exactly one person."""
    owners: dict[str, list[str]] = {}
    for name, person in config.people.items():
        for channel in person.channels:
            owners.setdefault(channel, []).append(name)
    return {channel: names[0] for channel, names in owners.items() if len(names) == 1}


class AckLinks:
    """The links notifications carry: made at delivery, read by the pages at /ack/."""

    def __init__(
        self,
        keys: AckLinkKeys,
        base_url: str,
        expire_after: float,
        recipients: Mapping[str, str] | None = None,
    ) -> None:
        self.keys = keys
        self._base = base_url.rstrip("/")
        self.expire_after = expire_after
        self._recipients = dict(recipients or {})

    @classmethod
    def for_collector(
        cls, notify: NotifyConfig, external_url: str | None, data_dir: Path
    ) -> AckLinks | None:
        """The links of a collector's config; None when switched off, without channels, or
        without external_url (a link needs the address people reach the collector at)."""
        if not notify.ack_links.enabled or not notify.channels or not external_url:
            return None
        return cls(
            AckLinkKeys.load(notify.ack_links, data_dir),
            external_url,
            float(notify.ack_links.expire_after),
            recipients(notify),
        )

    def recipient(self, channel: str) -> str:
        """Who a channel's message goes to: its person, or the channel itself."""
        return self._recipients.get(channel, channel)

    def link(self, call_id: int, recipient: str, at: float, key: str) -> AckLink:
        """The link of the notification `key` (the outbox payload's) written at `at`."""
        link_id = hashlib.sha256(f"{key}\x00{recipient}".encode()).hexdigest()[:24]
        return AckLink(call_id, recipient, int(at + self.expire_after), link_id)

    def url(self, link: AckLink) -> str:
        return f"{self._base}/ack/{self.keys.token(link)}"

    def url_for(self, payload: Mapping[str, Any], channel: str) -> str:
        """The link a notification's message carries on `channel` ("" for a resolve)."""
        if payload.get("event") not in LINKED_EVENTS:
            return ""
        link = self.link(
            int(payload["call"]["id"]),
            self.recipient(channel),
            float(payload["at"]),
            str(payload["key"]),
        )
        return self.url(link)
