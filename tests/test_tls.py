"""TLS between agent and collector, revoked tokens and token-file modes, with real processes."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml
from cryptography.hazmat.primitives import serialization

from agent.shipper import ReportSender
from checks.settings import ConfigError
from collector.auth import add_token, revoke_token
from collector.config import load_collector_config
from tests.helpers import RUNWATCH
from tests.procs import Processes, wait_for

EXIT_USAGE = 2


@dataclass(frozen=True)
class TlsCollector:
    url: str
    ca_file: Path
    tokens_file: Path


def write_cert(
    ca: trustme.CA, directory: Path, *names: str, expired: bool = False
) -> tuple[Path, Path]:
    """Issue a server certificate for `names`; return the paths of its PEM cert and key."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    leaf = (
        ca.issue_cert(*names, not_before=now - timedelta(days=3), not_after=now - timedelta(days=1))
        if expired
        else ca.issue_cert(*names)
    )
    cert, key = directory / "server.pem", directory / "server.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


def write_ca(ca: trustme.CA, path: Path) -> Path:
    ca.cert_pem.write_to_path(str(path))
    return path


def announced_url(log: Path) -> str | None:
    match = re.search(r"listening on (https?://127\.0\.0\.1:\d+)", log.read_text())
    return match.group(1) if match else None


def start_collector(processes: Processes, directory: Path, cert: Path, key: Path) -> str:
    """Run `runwatch collector` serving TLS with this cert and key; return its announced URL."""
    config = directory / "collector.yaml"
    # Relative paths: they resolve against the config file, like every path in it.
    config.write_text(
        yaml.safe_dump(
            {
                "listen": "127.0.0.1:0",
                "data_dir": "data",
                "tls": {
                    "cert_file": os.path.relpath(cert, directory),
                    "key_file": os.path.relpath(key, directory),
                },
            }
        )
    )
    log = directory / "collector.log"
    with log.open("w") as out:  # a file, not a pipe: nobody has to drain it
        collector = processes.start(RUNWATCH, "collector", "--config", str(config), stderr=out)

    def url() -> str | None:
        if collector.poll() is not None:
            pytest.fail(f"the collector exited with {collector.returncode}: {log.read_text()}")
        return announced_url(log)

    announced: str = wait_for("the collector to announce its URL", url, timeout=10)
    return announced


def start_agent(
    processes: Processes, collector: TlsCollector, directory: Path, host: str
) -> tuple[Path, str]:
    """Run `runwatch agent` reporting every second; return its log file and its token."""
    directory.mkdir(parents=True, exist_ok=True)
    token = add_token(collector.tokens_file, host)
    token_file = directory / "agent.token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    config = directory / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "collector": {
                    "url": collector.url,
                    "token_file": str(token_file),
                    "ca_file": str(collector.ca_file),
                    "timeout": "3s",
                },
                "host": host,
                "interval": "1s",
                "state_dir": str(directory / "state"),
                "checks": [{"type": "uptime"}],
            }
        )
    )
    log = directory / "agent.log"
    with log.open("w") as out:
        processes.start(RUNWATCH, "agent", "--config", str(config), stderr=out)
    return log, token


def https_json(url: str, ca_file: Path) -> Any:
    context = ssl.create_default_context(cafile=str(ca_file))
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        return json.load(response)


def reported(collector: TlsCollector, host: str) -> dict[str, Any] | None:
    hosts = https_json(f"{collector.url}/api/v1/hosts", collector.ca_file)
    return next((h for h in hosts if h["host"] == host), None)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def collector(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsCollector]:
    """One collector process serving TLS on 127.0.0.1, shared by this module's tests."""
    directory = tmp_path_factory.mktemp("collector")
    cert, key = write_cert(ca, directory / "tls", "127.0.0.1")
    processes = Processes()
    try:
        url = start_collector(processes, directory, cert, key)
        yield TlsCollector(
            url, write_ca(ca, directory / "ca.pem"), directory / "data" / "agents.tokens"
        )
    finally:
        processes.stop_all()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- TLS -------------------------------------------------------------------------------------------


def test_agent_reports_over_tls_when_it_trusts_the_collectors_ca(
    collector: TlsCollector, processes: Processes, tmp_path: Path
) -> None:
    assert collector.url.startswith("https://"), "the startup line shows https"
    log, token = start_agent(processes, collector, tmp_path, "tls-host")
    host = wait_for(
        "the host to report over https", lambda: reported(collector, "tls-host"), timeout=10
    )
    assert host["checks"][0]["check"] == "uptime"
    assert "cannot deliver" not in log.read_text()
    assert token not in log.read_text()


@pytest.mark.parametrize(
    ("url", "trust", "expected"),
    [
        pytest.param(
            "https",
            "other CA",
            ["certificate not trusted", "(check collector.ca_file)"],
            id="a different CA: not trusted, check ca_file",
        ),
        pytest.param(
            "https",
            None,
            ["certificate not trusted", "no ca_file is set"],
            id="no ca_file, so only system CAs: not trusted",
        ),
        pytest.param(
            "http",
            None,
            ["collector.url must start with https://"],
            id="plain http to a TLS collector: use https",
        ),
    ],
)
def test_an_untrusted_collector_is_refused_saying_which_setting_to_check(
    collector: TlsCollector, tmp_path: Path, url: str, trust: str | None, expected: list[str]
) -> None:
    ca_file = write_ca(trustme.CA(), tmp_path / "other-ca.pem") if trust else None
    target = collector.url.replace("https://", f"{url}://")
    result = ReportSender(target, None, 5.0, ca_file).send(b"{}")
    assert result.status is None
    for text in expected:
        assert text in result.detail
    if ca_file is not None:
        assert str(ca_file) in result.detail


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param(
            "for other.example",
            "host name mismatch: the certificate is for "
            "other.example, not 127.0.0.1 (check collector.url)",
            id="certificate for other.example only",
        ),
        pytest.param("expired", "certificate expired", id="expired certificate"),
    ],
)
def test_a_certificate_the_agent_cannot_accept_is_refused_saying_why(
    ca: trustme.CA, processes: Processes, tmp_path: Path, case: str, expected: str
) -> None:
    names = ("other.example",) if case == "for other.example" else ("127.0.0.1",)
    cert, key = write_cert(ca, tmp_path / "tls", *names, expired=case == "expired")
    url = start_collector(processes, tmp_path, cert, key)
    result = ReportSender(url, None, 5.0, write_ca(ca, tmp_path / "ca.pem")).send(b"{}")
    assert result.status is None
    assert expected in result.detail


# -- tokens ----------------------------------------------------------------------------------------


def test_a_revoked_token_is_refused_on_the_agents_next_report(
    collector: TlsCollector, processes: Processes, tmp_path: Path
) -> None:
    log, token = start_agent(processes, collector, tmp_path, "revoked-host")
    wait_for("the host to report", lambda: reported(collector, "revoked-host"), timeout=10)
    assert revoke_token(collector.tokens_file, "revoked-host")
    wait_for(
        "the agent's next report to get 401", lambda: "HTTP 401" in log.read_text(), timeout=3.5
    )

    def last_seq() -> int:
        host = reported(collector, "revoked-host")
        assert host is not None
        return int(host["last_seq"])

    seq = last_seq()
    time.sleep(1.2)  # more than the agent's interval: another report was sent and refused
    assert last_seq() == seq
    assert token not in log.read_text()


@pytest.mark.parametrize(
    ("mode", "warnings"),
    [
        pytest.param(0o644, 1, id="0644: readable by all: one warning"),
        pytest.param(0o640, 1, id="0640: readable by the group: one warning"),
        pytest.param(0o600, 0, id="0600: no warning"),
        pytest.param(0o400, 0, id="0400: no warning"),
    ],
)
def test_a_token_file_others_can_read_is_warned_about_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int, warnings: int
) -> None:
    token_file = tmp_path / "agent.token"
    token_file.write_text("rwt_secret-token-value")
    token_file.chmod(mode)
    with caplog.at_level(logging.WARNING, logger="agent.shipper"):
        sender = ReportSender(f"http://127.0.0.1:{free_port()}", token_file, 1.0)
        for _ in range(3):
            assert not sender.send(b"{}").delivered
    found = [r.getMessage() for r in caplog.records if "chmod 600" in r.getMessage()]
    assert len(found) == warnings
    for message in found:
        assert str(token_file) in message
        assert f"{mode:04o}" in message
    assert "rwt_secret-token-value" not in caplog.text


# -- config ----------------------------------------------------------------------------------------


def encrypted_key(leaf: trustme.LeafCert) -> bytes:
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


@pytest.mark.parametrize(
    ("case", "path", "message"),
    [
        pytest.param("missing cert", "tls -> cert_file", "No such file", id="missing cert file"),
        pytest.param("missing key", "tls -> key_file", "No such file", id="missing key file"),
        pytest.param(
            "key as cert", "tls -> cert_file", "no PEM certificate", id="cert_file holds a key"
        ),
        pytest.param(
            "other key",
            "tls -> key_file",
            "is not the key of the certificate",
            id="key of another certificate",
        ),
        pytest.param("encrypted key", "tls -> key_file", "is encrypted", id="encrypted key"),
    ],
)
def test_tls_config_mistakes_name_their_key(
    ca: trustme.CA, tmp_path: Path, case: str, path: str, message: str
) -> None:
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    if case == "missing cert":
        cert.unlink()
    elif case == "missing key":
        key.unlink()
    elif case == "key as cert":
        cert.write_bytes(key.read_bytes())
    elif case == "other key":
        ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(key))
    elif case == "encrypted key":
        key.write_bytes(encrypted_key(leaf))
    config = tmp_path / "collector.yaml"
    config.write_text("tls: {cert_file: server.pem, key_file: server.key}\n")
    with pytest.raises(ConfigError) as caught:
        load_collector_config(config)
    assert caught.value.path == path
    assert message in caught.value.message


def test_config_validate_exits_2_naming_the_missing_cert(tmp_path: Path) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text("tls: {cert_file: missing.pem, key_file: missing.key}\n")
    result = subprocess.run(
        [RUNWATCH, "config", "validate", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == EXIT_USAGE
    assert "tls -> cert_file" in result.stderr
    assert str(tmp_path / "missing.pem") in result.stderr, "resolved against the config file"


# -- runwatch up -----------------------------------------------------------------------------------


def test_runwatch_up_with_tls_announces_https_and_its_agent_reports(
    ca: trustme.CA, processes: Processes, tmp_path: Path
) -> None:
    write_cert(ca, tmp_path / "tls", "127.0.0.1")
    config = tmp_path / "collector.yaml"
    config.write_text("tls: {cert_file: tls/server.pem, key_file: tls/server.key}\n")
    url = processes.runwatch_up(tmp_path / "up.out", tmp_path / "data", config, "1s", timeout=10)
    assert url.startswith("https://127.0.0.1:")
    hosts = wait_for(
        "this host over https",
        lambda: https_json(f"{url}/api/v1/hosts", write_ca(ca, tmp_path / "ca.pem")),
        timeout=10,
    )
    assert len(hosts) == 1
