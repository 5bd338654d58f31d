"""Agent tokens: stored hashed, one host each, read from a file that admins edit with the CLI."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from checks.schema import HOST_NAME_PATTERN

log = logging.getLogger(__name__)
_Entry = TypeVar("_Entry")  # a line of a tokens or users file

TOKEN_PREFIX = "rwt_"  # noqa: S105 -- a prefix that marks tokens, not a secret  # nosec B105
_HASH_PREFIX = "sha256:"
_HOST = re.compile(HOST_NAME_PATTERN)


def hash_token(token: str) -> str:
    """Hash a token for storage. Tokens are 256 random bits, so a plain SHA-256 suffices."""
    return _HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def token_fingerprint(token: str) -> str:
    """A short public mark of a token: the first 16 hex digits of its stored hash."""
    return hash_token(token)[len(_HASH_PREFIX) :][:16]


# Roles of operator tokens and console users. Agent tokens have none: they only report.
ROLE_OPERATOR = "operator"
ROLE_READ_ONLY = "read-only"
ROLES = (ROLE_OPERATOR, ROLE_READ_ONLY)


@dataclass(frozen=True, slots=True)
class TokenEntry:
    host: str
    token_hash: str
    created_at: float
    role: str = ROLE_OPERATOR  # operator tokens only: read-only sees everything, changes nothing

    @property
    def fingerprint(self) -> str:
        """The token's fingerprint; `runwatch deploy` compares it with a host's token file."""
        return self.token_hash[len(_HASH_PREFIX) :][:16]


class TokenFileError(Exception):
    """The tokens file cannot be read or has a bad line."""


def _entry_lines(path: Path) -> list[tuple[int, list[str]]]:
    """The words of each line that is not blank or a comment, with its number (from 1); none
    for a missing file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise TokenFileError(f"{path}: cannot read: {exc.strerror}") from None
    words = ((number, line.split("#", 1)[0].split()) for number, line in enumerate(lines, 1))
    return [(number, parts) for number, parts in words if parts]


def read_tokens(path: Path) -> list[TokenEntry]:
    """Read `HOST sha256:HEX [CREATED_AT [ROLE]]` lines; `#` starts a comment."""
    entries = []
    for number, parts in _entry_lines(path):
        if len(parts) not in (2, 3, 4) or not parts[1].startswith(_HASH_PREFIX):
            raise TokenFileError(f"{path}:{number}: expected 'HOST sha256:HEX [CREATED_AT [ROLE]]'")
        try:
            created = float(parts[2]) if len(parts) >= 3 else 0.0
        except ValueError:
            raise TokenFileError(
                f"{path}:{number}: CREATED_AT must be a Unix time in seconds, got {parts[2]!r}"
            ) from None
        role = parts[3] if len(parts) == 4 else ROLE_OPERATOR
        if role not in ROLES:
            raise TokenFileError(f"{path}:{number}: role {role!r} is not one of {', '.join(ROLES)}")
        entries.append(TokenEntry(parts[0], parts[1], created, role))
    return entries


def _write_tokens(path: Path, entries: list[TokenEntry]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    body = "# runwatch tokens: HOST sha256:HASH CREATED_AT [ROLE] (managed by `runwatch token`)\n"
    # The role is written only when it is not the default, so older readers keep working.
    body += "".join(
        f"{e.host} {e.token_hash} {e.created_at:.0f}"
        f"{'' if e.role == ROLE_OPERATOR else ' ' + e.role}\n"
        for e in entries
    )
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
        raise TokenFileError(
            f"{host!r} is not a valid host name (letters, digits, '.', '-' and "
            "'_', starting with a letter or digit)"
        )


def add_token(path: Path, host: str, *, replace: bool = False, role: str = ROLE_OPERATOR) -> str:
    """Create a token for `host`, store its hash, and return the token (shown once).

    `role` matters for operator tokens only (agent tokens keep the default)."""
    check_host_name(host)
    if role not in ROLES:
        raise TokenFileError(f"role {role!r} is not one of {', '.join(ROLES)}")
    with _locked(path):
        entries = read_tokens(path)
        if any(e.host == host for e in entries):
            if not replace:
                raise TokenExists(f"{host} already has a token; revoke it first or use --replace")
            entries = [e for e in entries if e.host != host]
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        entries.append(TokenEntry(host, hash_token(token), time.time(), role))
        _write_tokens(path, entries)
    return token


def revoke_token(path: Path, host: str) -> bool:
    """Remove the host's token; return whether it had one."""
    return _remove_entries(path, read_tokens, _write_tokens, lambda e: e.host == host)


def _remove_entries(
    path: Path,
    read: Callable[[Path], list[_Entry]],
    write: Callable[[Path, list[_Entry]], None],
    unwanted: Callable[[_Entry], bool],
) -> bool:
    """Rewrite a tokens or users file without the unwanted entries, under its lock; return
    whether there were any."""
    with _locked(path):
        entries = read(path)
        kept = [e for e in entries if not unwanted(e)]
        if len(kept) == len(entries):
            return False
        write(path, kept)
    return True


class TokenVerifier:
    """Map a presented token to its host. Picks up file changes (add, revoke) within a second."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._clock = clock
        self._by_hash: dict[str, str] = {}
        self._roles: dict[str, str] = {}
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
        self._roles = {e.token_hash: e.role for e in entries}
        self._stamp = stamp

    def host_for(self, token: str) -> str | None:
        """Return the host this token belongs to, or None."""
        now = self._clock()
        if now - self._checked_at >= 1.0:
            self._checked_at = now
            self._reload()
        # Lookup by the hash of a 256-bit secret: timing reveals nothing usable.
        return self._by_hash.get(hash_token(token))

    def identify(self, token: str) -> tuple[str, str] | None:
        """Return (name, role) for an operator token, or None."""
        name = self.host_for(token)
        if name is None:
            return None
        return name, self._roles.get(hash_token(token), ROLE_OPERATOR)

    def has_fingerprint(self, name: str, fingerprint: str) -> str | None:
        """The role of `name`'s token if its fingerprint is still `fingerprint`; else None."""
        now = self._clock()
        if now - self._checked_at >= 1.0:
            self._checked_at = now
            self._reload()
        for token_hash, owner in self._by_hash.items():
            if owner == name and token_hash[len(_HASH_PREFIX) :][:16] == fingerprint:
                return self._roles.get(token_hash, ROLE_OPERATOR)
        return None


# -- console users: a name, a role and a password hash (PBKDF2-SHA256) ------------------------

_PBKDF2_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256


@dataclass(frozen=True, slots=True)
class UserEntry:
    name: str
    role: str
    password_hash: str  # pbkdf2_sha256$ITERATIONS$SALT_HEX$HASH_HEX

    @property
    def fingerprint(self) -> str:
        """Changes when the password or role changes: signs out the sessions of the old one."""
        return hashlib.sha256(f"{self.role} {self.password_hash}".encode()).hexdigest()[:16]


def hash_password(password: str, *, iterations: int = _PBKDF2_ITERATIONS) -> str:
    """Hash a password for the users file (PBKDF2-HMAC-SHA256, random 16-byte salt)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a hash made by hash_password (constant-time compare)."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        computed = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), bytes.fromhex(salt), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(computed.hex(), digest)


def read_users(path: Path) -> list[UserEntry]:
    """Read `NAME ROLE pbkdf2_sha256$...` lines; `#` starts a comment."""
    users = []
    for number, parts in _entry_lines(path):
        if len(parts) != 3 or parts[1] not in ROLES or not parts[2].startswith("pbkdf2_"):
            raise TokenFileError(
                f"{path}:{number}: expected 'NAME ROLE pbkdf2_sha256$...' "
                f"with ROLE one of {', '.join(ROLES)}"
            )
        users.append(UserEntry(parts[0], parts[1], parts[2]))
    return users


def set_user(path: Path, name: str, password: str, role: str = ROLE_OPERATOR) -> None:
    """Add a console user, or change an existing one's password and role."""
    check_host_name(name)
    if role not in ROLES:
        raise TokenFileError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise TokenFileError("the password must have at least 8 characters")
    with _locked(path):
        users = [u for u in read_users(path) if u.name != name]
        users.append(UserEntry(name, role, hash_password(password)))
        _write_users(path, users)


def _write_users(path: Path, users: list[UserEntry]) -> None:
    _write_lines(
        path,
        "# runwatch console users: NAME ROLE PASSWORD_HASH (managed by `runwatch user`)\n",
        [f"{u.name} {u.role} {u.password_hash}" for u in users],
    )


def remove_user(path: Path, name: str) -> bool:
    """Remove a console user; return whether there was one."""
    return _remove_entries(path, read_users, _write_users, lambda u: u.name == name)


def _write_lines(path: Path, header: str, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(header + "".join(line + "\n" for line in lines))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
