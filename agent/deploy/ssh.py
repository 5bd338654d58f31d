"""SSH to a host with paramiko: verified host keys, key auth, commands (sudo if not root), SFTP."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import select
import shlex
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko

from agent.deploy.errors import ConnectError, HostKeyError, Interrupted, RemoteCommandError
from agent.deploy.inventory import DeployTarget
from agent.deploy.stop import StopRequest

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 10.0
_POLL_SECONDS = 0.2  # how soon a running command notices a stop request

# Put before every command: tells us (first line of stderr) the process group the command runs
# in, so that a stop request or a timeout can end all of it, children included. Closing the
# channel would not: without a terminal, sshd leaves the command running.
_PGID_MARK = "runwatch-deploy-pgid "
_PGID_PREFIX = (
    f'read -r _ _ _ _ _rw_pgid _ < /proc/$$/stat 2>/dev/null && echo "{_PGID_MARK}$_rw_pgid" >&2\n'
)


def fingerprint(key: paramiko.PKey) -> str:
    """The key's SHA256 fingerprint as OpenSSH prints it (`SHA256:...`)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(address: str, port: int) -> str:
    """The name a host has in known_hosts: `address`, or `[address]:port` off port 22."""
    return address if port == 22 else f"[{address}]:{port}"


class KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse a host whose key known_hosts lacks, unless trust on first use was asked for.

    With `accept_new`, the key is recorded in the file (a lock keeps parallel hosts from
    overwriting each other's lines). A key that differs from a recorded one is refused by
    paramiko itself, before this policy is asked, whatever `accept_new` says.
    """

    def __init__(self, path: Path, *, accept_new: bool, lock: threading.Lock) -> None:
        self.path = path
        self.accept_new = accept_new
        self._lock = lock

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        offered = fingerprint(key)
        if not self.accept_new:
            raise HostKeyError(
                f"host key of {hostname} is not in {self.path}: it offers {key.get_name()} "
                f"{offered}. Check that fingerprint on the host (ssh-keygen -lf on its host key), "
                "then rerun with --accept-new-host-keys to record it",
                host=hostname,
                offered=offered,
                known=None,
            )
        with self._lock:
            keys = paramiko.HostKeys()
            if self.path.exists():
                keys.load(str(self.path))
            keys.add(hostname, key.get_name(), key)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keys.save(str(self.path))
        log.warning(
            "recorded the new host key of %s in %s: %s %s",
            hostname,
            self.path,
            key.get_name(),
            offered,
        )


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str


class RemoteHost:
    """One SSH connection. Commands run under `sh -c`, through `sudo -n` when not root."""

    def __init__(
        self, client: paramiko.SSHClient, target: DeployTarget, stop: StopRequest | None = None
    ) -> None:
        self._client = client
        self.target = target
        self.sudo = target.user != "root"
        self._sftp: paramiko.SFTPClient | None = None
        self._stop = stop or StopRequest()
        self._interruptible = True

    @contextlib.contextmanager
    def uninterruptible(self) -> Iterator[None]:
        """Run what is inside to its end even after a stop request (undo, finishing a remove)."""
        before, self._interruptible = self._interruptible, False
        try:
            yield
        finally:
            self._interruptible = before

    def check_stop(self, what: str) -> None:
        """Raise Interrupted if a stop was asked for and this connection may be interrupted."""
        if self._interruptible:
            self._stop.check(what)

    def pause(self, seconds: float, what: str) -> None:
        """Sleep `seconds`, or raise Interrupted as soon as a stop is asked for."""
        if self._interruptible:
            self._stop.sleep(seconds, what)
        else:
            time.sleep(seconds)

    @classmethod
    def connect(
        cls,
        target: DeployTarget,
        known_hosts: Path,
        *,
        accept_new: bool,
        lock: threading.Lock,
        timeout: float = CONNECT_TIMEOUT_SECONDS,
        stop: StopRequest | None = None,
    ) -> RemoteHost:
        """Connect with the target's key, checking the host key against `known_hosts`."""
        client = paramiko.SSHClient()
        if known_hosts.exists():
            # As "system" keys: paramiko checks against them but never writes them back.
            client.load_system_host_keys(str(known_hosts))
        client.set_missing_host_key_policy(
            KnownHostsPolicy(known_hosts, accept_new=accept_new, lock=lock)
        )
        where = f"{target.address}:{target.port}"
        try:
            client.connect(
                target.address,
                port=target.port,
                username=target.user,
                key_filename=str(target.key),
                allow_agent=False,
                look_for_keys=False,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            name = known_hosts_name(target.address, target.port)
            offered, known = fingerprint(exc.key), fingerprint(exc.expected_key)
            raise HostKeyError(
                f"host key of {name} has CHANGED: it offers {offered}, but {known_hosts} "
                f"records {known}. This may be an attack; if the host was reinstalled, remove "
                f"the old line (ssh-keygen -R '{name}' -f {known_hosts}) and rerun with "
                "--accept-new-host-keys",
                host=name,
                offered=offered,
                known=known,
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            raise ConnectError(
                f"{where} refused key {target.key} for user {target.user}: "
                "is its public key in that user's authorized_keys?"
            ) from None
        except (paramiko.PasswordRequiredException, paramiko.SSHException) as exc:
            client.close()
            if isinstance(exc, paramiko.PasswordRequiredException):
                raise ConnectError(
                    f"key {target.key} is encrypted; deploy needs a key without a passphrase"
                ) from None
            raise ConnectError(f"SSH to {where} failed: {exc}") from None
        except FileNotFoundError:
            client.close()
            raise ConnectError(f"key file {target.key} does not exist") from None
        except TimeoutError:
            client.close()
            raise ConnectError(f"cannot connect to {where}: timed out after {timeout:g}s") from None
        except OSError as exc:
            client.close()
            reason = exc.strerror or str(exc)
            if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
                reason = "connection refused (nothing listens there)"
            raise ConnectError(f"cannot connect to {where}: {reason}") from None
        return cls(client, target, stop)

    def run(
        self,
        command: str,
        *,
        what: str,
        stdin: bytes | None = None,
        timeout: float = 600.0,
        check: bool = True,
    ) -> CommandResult:
        """Run a shell command; raise RemoteCommandError (naming `what`) on a non-zero exit.

        A stop request (unless `uninterruptible`) or `timeout` seconds end the command's whole
        process group on the host and raise Interrupted or RemoteCommandError.
        """
        wrapped = f"sh -c {shlex.quote(_PGID_PREFIX + command)}"
        if self.sudo:
            wrapped = f"sudo -n -- {wrapped}"
        self.check_stop(what)
        # The command runs under `sh -c`, quoted with shlex.quote above.
        stdin_file, stdout_file, _ = self._client.exec_command(wrapped)  # nosec B601
        channel = stdout_file.channel
        try:
            if stdin is not None:
                stdin_file.write(stdin)
            channel.shutdown_write()
            status, out, err = self._collect(channel, what, timeout)
        finally:
            channel.close()
        if check and status != 0:
            tail = err.strip().splitlines()[-5:] or out.strip().splitlines()[-5:]
            detail = " / ".join(tail) or "no output"
            if self.sudo and status == 1 and "sudo:" in err:
                detail += f" (user {self.target.user} needs password-less sudo)"
            raise RemoteCommandError(
                f"{what} failed (exit {status}): {detail}",
                what=what,
                exit_status=status,
                stderr=err,
            )
        return CommandResult(status, out, err)

    def _collect(
        self, channel: paramiko.Channel, what: str, timeout: float
    ) -> tuple[int, str, str]:
        """Read the command's output until it exits, giving way to a stop request or timeout."""
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        while (
            not channel.exit_status_ready() or channel.recv_ready() or channel.recv_stderr_ready()
        ):
            if channel.recv_ready():
                out += channel.recv(1 << 16)
            elif channel.recv_stderr_ready():
                err += channel.recv_stderr(1 << 16)
            elif self._interruptible and self._stop.is_set():
                self._end(err, what)
                raise Interrupted(what)
            elif time.monotonic() > deadline:
                self._end(err, what)
                raise RemoteCommandError(
                    f"{what} did not finish within {timeout:g}s; it was stopped",
                    what=what,
                    exit_status=-1,
                    stderr=_without_mark(err),
                )
            elif channel.eof_received:
                channel.status_event.wait(_POLL_SECONDS)
            else:
                # The channel is readable once either stream has data or is closed.
                select.select([channel], [], [], _POLL_SECONDS)
        status = channel.recv_exit_status()
        return status, out.decode(errors="replace"), _without_mark(err)

    def _end(self, err: bytearray, what: str) -> None:
        """Stop a running command's whole process group on the host."""
        lines = err.decode(errors="replace").splitlines()
        marks = [line[len(_PGID_MARK) :] for line in lines if line.startswith(_PGID_MARK)]
        if not marks or not marks[0].strip().isdigit():
            log.warning(
                "%s on %s: cannot stop it on the host (no process group seen)",
                what,
                self.target.name,
            )
            return
        with self.uninterruptible():
            self.run(
                f"kill -s TERM -- -{int(marks[0])} 2>/dev/null; true",
                what=f"stop: {what}",
                timeout=30,
            )

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self._client.open_sftp()
        return self._sftp

    def upload(self, local: Path | bytes, remote: str, *, mode: int = 0o644) -> None:
        """Put a file (or bytes) at `remote` with `mode`, atomically: a half copy is never seen.

        The mode is set before any byte is written, so a token is never readable by others.
        As root the file goes straight to its place; otherwise it goes to a private staging
        directory first and sudo moves it.
        """
        if self.sudo:
            staging = self.run_plain("mktemp -d", what="make a staging directory").strip()
            part = f"{staging}/{Path(remote).name}"
        else:
            part = f"{remote}.part"
        handle = self.sftp.open(part, "wb")
        try:
            self.sftp.chmod(part, mode)
            handle.set_pipelined(True)
            if isinstance(local, bytes):
                handle.write(local)
            else:
                with local.open("rb") as source:
                    while chunk := source.read(1 << 20):
                        self.check_stop(f"upload {remote}")
                        handle.write(chunk)
        finally:
            handle.close()
        if self.sudo:
            self.run(
                f"install -m {mode:o} {shlex.quote(part)} {shlex.quote(remote)} && "
                f"rm -rf {shlex.quote(staging)}",
                what=f"move the upload to {remote}",
            )
        else:
            self.sftp.posix_rename(part, remote)

    def run_plain(self, command: str, *, what: str) -> str:
        """Run a command as the login user (no sudo) and return its output."""
        # Callers pass fixed commands (`mktemp -d`), never text from an inventory.
        _, stdout_file, stderr_file = self._client.exec_command(command, timeout=60)  # nosec B601
        out = stdout_file.read().decode(errors="replace")
        if stdout_file.channel.recv_exit_status() != 0:
            err = stderr_file.read().decode(errors="replace").strip()
            raise RemoteCommandError(
                f"{what} failed: {err or 'no output'}", what=what, exit_status=1, stderr=err
            )
        return out

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        self._client.close()


def _without_mark(err: bytearray) -> str:
    """stderr as the command wrote it, without the line that names its process group."""
    text = err.decode(errors="replace")
    return "".join(
        line for line in text.splitlines(keepends=True) if not line.startswith(_PGID_MARK)
    )
