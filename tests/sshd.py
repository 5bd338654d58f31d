"""Real OpenSSH servers on loopback addresses: one `sshd -f CONFIG` per test host."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.procs import Processes


@dataclass(frozen=True)
class SshHost:
    """One running sshd: where it listens and its public host key line."""

    address: str
    port: int
    host_key_pub: str  # "ssh-ed25519 AAAA..."
    directory: Path


def keygen(path: Path) -> str:
    """Make an ed25519 key pair at `path`; return the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def free_port(address: str) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def start_sshd(
    processes: Processes, sshd: str, directory: Path, address: str, authorized: str
) -> SshHost:
    """Start sshd on `address`, allowing the public key line `authorized` for root."""
    directory.mkdir(parents=True)
    host_key = directory / "host_ed25519"
    pub = keygen(host_key)
    (directory / "authorized_keys").write_text(authorized + "\n")
    port = free_port(address)
    config = directory / "sshd_config"
    config.write_text(
        f"ListenAddress {address}\n"
        f"Port {port}\n"
        f"HostKey {host_key}\n"
        f"PidFile {directory / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "PermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\n"
        "LogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    # -D: stay in the foreground, so the PID we hold is the server's; -e: log to stderr.
    log = (directory / "sshd.log").open("w")
    processes.start(sshd, "-D", "-e", "-f", str(config), stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return SshHost(address, port, pub, directory)
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"sshd on {address}:{port} did not start: {(directory / 'sshd.log')}")


def sshd_path() -> str | None:
    """The sshd binary, which Debian puts in /usr/sbin (not always on a user's PATH)."""
    found = shutil.which("sshd")
    if found is None and os.access("/usr/sbin/sshd", os.X_OK):
        found = "/usr/sbin/sshd"
    return found
