"""Agent tokens: stored hashed, one host each, read from a file that admins edit with the CLI."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from checks.schema import HOST_NAME_PATTERN

log = logging.getLogger(__name__)

TOKEN_PREFIX = "rwt_"  # noqa: S105 -- a prefix that marks tokens, not a secret  # nosec B105
_HASH_PREFIX = "sha256:"
_HOST = re.compile(HOST_NAME_PATTERN)


def hash_token(token: str) -> str:
    """Hash a token for storage. Tokens are 256 random bits, so a plain SHA-256 suffices."""
    return _HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def token_fingerprint(token: str) -> str:
    """A short public mark of a token: the first 16 hex digits of its stored hash."""
    return hash_token(token)[len(_HASH_PREFIX):][:16]


@dataclass(frozen=True, slots=True)
class TokenEntry:
    host: str
    token_hash: str
    created_at: float

    @property
    def fingerprint(self) -> str:
        """The token's fingerprint; `runwatch deploy` compares it with a host's token file."""
        return self.token_hash[len(_HASH_PREFIX):][:16]


class TokenFileError(Exception):
    """The tokens file cannot be read or has a bad line."""


def read_tokens(path: Path) -> list[TokenEntry]:
    """Read `HOST sha256:HEX CREATED_AT` lines; `#` starts a comment."""
    entries = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise TokenFileError(f"{path}: cannot read: {exc.strerror}") from None
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) not in (2, 3) or not parts[1].startswith(_HASH_PREFIX):
            raise TokenFileError(f"{path}:{number}: expected 'HOST sha256:HEX [CREATED_AT]'")
        try:
            created = float(parts[2]) if len(parts) == 3 else 0.0
        except ValueError:
            raise TokenFileError(f"{path}:{number}: CREATED_AT must be a Unix time in seconds, "
                                 f"got {parts[2]!r}") from None
        entries.append(TokenEntry(parts[0], parts[1], created))
    return entries


def _write_tokens(path: Path, entries: list[TokenEntry]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    body = "# runwatch agent tokens: HOST sha256:HASH CREATED_AT (managed by `runwatch token`)\n"
    body += "".join(f"{e.host} {e.token_hash} {e.created_at:.0f}\n" for e in entries)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(body)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of a tokens file (the CLI and the collector's API both edit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class TokenExists(TokenFileError):
    """The host already has a token and replacing it was not asked for."""


def check_host_name(host: str) -> None:
    """Raise TokenFileError unless `host` is a valid host (or operator) name."""
    if not _HOST.match(host):
        raise TokenFileError(f"{host!r} is not a valid host name (letters, digits, '.', '-' and "
                             "'_', starting with a letter or digit)")


def add_token(path: Path, host: str, *, replace: bool = False) -> str:
    """Create a token for `host`, store its hash, and return the token (shown once)."""
    check_host_name(host)
    with _locked(path):
        entries = read_tokens(path)
        if any(e.host == host for e in entries):
            if not replace:
                raise TokenExists(f"{host} already has a token; revoke it first or use --replace")
            entries = [e for e in entries if e.host != host]
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        entries.append(TokenEntry(host, hash_token(token), time.time()))
        _write_tokens(path, entries)
    return token


def revoke_token(path: Path, host: str) -> bool:
    """Remove the host's token; return whether it had one."""
    with _locked(path):
        entries = read_tokens(path)
        kept = [e for e in entries if e.host != host]
        if len(kept) == len(entries):
            return False
        _write_tokens(path, kept)
    return True


class TokenVerifier:
    """Map a presented token to its host. Picks up file changes (add, revoke) within a second."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._clock = clock
        self._by_hash: dict[str, str] = {}
        self._stamp: tuple[int, int] | None = None
        self._checked_at = float("-inf")
        self._reload()

    def _reload(self) -> None:
        try:
            stat = self._path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp and self._by_hash is not None:
            return
        try:
            entries = read_tokens(self._path)
        except TokenFileError as exc:
            # Keep the tokens we had: a typo in the file must not lock out the whole fleet.
            log.error("tokens file not reloaded, keeping the previous tokens: %s", exc)
            return
        self._by_hash = {e.token_hash: e.host for e in entries}
        self._stamp = stamp

    def host_for(self, token: str) -> str | None:
        """Return the host this token belongs to, or None."""
        now = self._clock()
        if now - self._checked_at >= 1.0:
            self._checked_at = now
            self._reload()
        # Lookup by the hash of a 256-bit secret: timing reveals nothing usable.
        return self._by_hash.get(hash_token(token))
