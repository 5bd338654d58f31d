"""Host keys are verified: unknown or changed keys are refused unless asked to trust them."""

from __future__ import annotations

import threading
from pathlib import Path

import paramiko
import pytest

from agent.deploy.errors import ConnectError, HostKeyError
from agent.deploy.inventory import DeployTarget
from agent.deploy.ssh import KnownHostsPolicy, RemoteHost, fingerprint
from tests.procs import Processes
from tests.sshd import SshHost, keygen, sshd_path, start_sshd


def test_policy_refuses_an_unknown_key_and_leaves_known_hosts_alone(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    key = paramiko.Ed25519Key.from_private_key_file(str(_host_key(tmp_path)))
    policy = KnownHostsPolicy(known_hosts, accept_new=False, lock=threading.Lock())
    with pytest.raises(HostKeyError) as caught:
        policy.missing_host_key(paramiko.SSHClient(), "[127.0.0.9]:2222", key)
    assert caught.value.offered == fingerprint(key)
    assert caught.value.known is None
    assert "--accept-new-host-keys" in str(caught.value)
    assert not known_hosts.exists()


def test_policy_records_a_new_key_when_asked(tmp_path: Path) -> None:
    known_hosts = tmp_path / "ssh" / "known_hosts"
    key = paramiko.Ed25519Key.from_private_key_file(str(_host_key(tmp_path)))
    policy = KnownHostsPolicy(known_hosts, accept_new=True, lock=threading.Lock())
    policy.missing_host_key(paramiko.SSHClient(), "[127.0.0.9]:2222", key)
    recorded = paramiko.HostKeys(str(known_hosts))
    assert recorded.lookup("[127.0.0.9]:2222")["ssh-ed25519"] == key


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    import subprocess

    path = _host_key(tmp_path)
    key = paramiko.Ed25519Key.from_private_key_file(str(path))
    listed = subprocess.run(
        ["ssh-keygen", "-lf", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert fingerprint(key) == listed.split()[1]


def _host_key(tmp_path: Path) -> Path:
    path = tmp_path / "host_key"
    keygen(path)
    return path


@pytest.fixture
def sshd_host(tmp_path: Path, processes: Processes) -> tuple[SshHost, Path]:
    sshd = sshd_path()
    if sshd is None:
        pytest.skip("sshd not installed (Debian package: openssh-server)")
    key = tmp_path / "id_ed25519"
    host = start_sshd(processes, sshd, tmp_path / "sshd", "127.0.0.8", keygen(key))
    return host, key


def _target(host: SshHost, key: Path) -> DeployTarget:
    return DeployTarget(
        name="h",
        address=host.address,
        port=host.port,
        user="root",
        key=key,
        groups=(),
        install_root="/srv/rw",
        python="python3",
        service="process",
        report_timeout=10.0,
    )


def test_real_sshd_unknown_then_accepted_then_changed(
    sshd_host: tuple[SshHost, Path], tmp_path: Path
) -> None:
    host, key = sshd_host
    target = _target(host, key)
    known_hosts = tmp_path / "known_hosts"
    lock = threading.Lock()

    with pytest.raises(HostKeyError, match="is not in"):
        RemoteHost.connect(target, known_hosts, accept_new=False, lock=lock)
    assert not known_hosts.exists()

    RemoteHost.connect(target, known_hosts, accept_new=True, lock=lock).close()
    assert f"[{host.address}]:{host.port} {host.host_key_pub}" in known_hosts.read_text()

    # Known now: no flag needed, and commands and uploads work.
    remote = RemoteHost.connect(target, known_hosts, accept_new=False, lock=lock)
    try:
        assert remote.run("echo $((6 * 7))", what="arithmetic").stdout.strip() == "42"
        secret = tmp_path / "secret"
        remote.upload(b"s3cret\n", str(secret), mode=0o600)
        assert secret.read_bytes() == b"s3cret\n"
        assert secret.stat().st_mode & 0o777 == 0o600
    finally:
        remote.close()

    # The host is "reinstalled": a new key. Refused, even with trust on first use.
    impostor = keygen(tmp_path / "impostor")
    known_hosts.write_text(f"[{host.address}]:{host.port} {impostor}\n")
    for accept_new in (False, True):
        with pytest.raises(HostKeyError, match="CHANGED") as caught:
            RemoteHost.connect(target, known_hosts, accept_new=accept_new, lock=lock)
        assert caught.value.known is not None
        assert caught.value.offered != caught.value.known
    assert known_hosts.read_text() == f"[{host.address}]:{host.port} {impostor}\n"


def test_real_sshd_refusing_our_key(sshd_host: tuple[SshHost, Path], tmp_path: Path) -> None:
    host, _ = sshd_host
    stranger = tmp_path / "stranger"
    keygen(stranger)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{host.address}]:{host.port} {host.host_key_pub}\n")
    with pytest.raises(ConnectError, match="refused key"):
        RemoteHost.connect(
            _target(host, stranger), known_hosts, accept_new=False, lock=threading.Lock()
        )
