"""Who reaches what: the read API's and /metrics' defaults, the Host check against DNS
rebinding, outbox repairs behind an operator token, and CLI changes in the audit log."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import pwd
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import yaml
from litestar.testing import TestClient

from checks.schema import encode
from collector.access import HostPolicy
from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import ROLE_READ_ONLY, add_token
from collector.server import bind, url_of
from collector.store.records import OutboxOp
from runwatch.cli import main
from tests.helpers import FS_RULE, FakeClock, Reporter, collector_config
from tests.helpers.cases import cases

# -- defaults: derived from where the collector listens ------------------------------------------


@pytest.mark.parametrize(
    ("settings", "read_api", "metrics"),
    cases(
        {
            "default listen: loopback, open": ({}, "open", "open"),
            "IPv6 loopback: open": ({"listen": "[::1]:9330"}, "open", "open"),
            "localhost: open": ({"listen": "localhost:9330"}, "open", "open"),
            "every address: token": ({"listen": "0.0.0.0:9330"}, "token", "token"),
            "a LAN address: token": ({"listen": "10.0.0.5:9330"}, "token", "token"),
            "loopback behind a proxy with external_url: token": (
                {"external_url": "https://collector.example.org"},
                "token",
                "token",
            ),
            "explicit open stays open": (
                {"listen": "0.0.0.0:9330", "operators": {"read_api": "open"}},
                "open",
                "token",
            ),
            "metrics behind a token on loopback": (
                {"operators": {"metrics": "token"}},
                "open",
                "token",
            ),
        }
    ),
)
def test_read_api_and_metrics_default_to_token_beyond_loopback(
    tmp_path: Path, settings: dict[str, Any], read_api: str, metrics: str
) -> None:
    config = collector_config(tmp_path, **settings)
    assert (config.operators.read_api, config.operators.metrics) == (read_api, metrics)


def test_an_external_url_that_is_no_url_is_a_config_error(tmp_path: Path) -> None:
    from checks.settings import ConfigError

    with pytest.raises(ConfigError) as raised:
        collector_config(tmp_path, external_url="collector.example.org")
    assert raised.value.path == "external_url"


@pytest.mark.parametrize(
    ("settings", "warned"),
    cases(
        {
            "loopback: no warning": ({}, []),
            "beyond loopback, defaults: no warning": ({"listen": "0.0.0.0:9330"}, []),
            "read API open beyond loopback": (
                {"listen": "0.0.0.0:9330", "operators": {"read_api": "open"}},
                ["read_api"],
            ),
            "both open beyond loopback": (
                {"listen": "0.0.0.0:9330", "operators": {"read_api": "open", "metrics": "open"}},
                ["read_api", "metrics"],
            ),
        }
    ),
)
def test_a_collector_open_beyond_loopback_warns_at_start(
    make_service: Callable[..., CollectorService],
    caplog: pytest.LogCaptureFixture,
    settings: dict[str, Any],
    warned: list[str],
) -> None:
    service = make_service(**settings)
    with caplog.at_level(logging.WARNING, logger="collector.api"), TestClient(create_app(service)):
        pass
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "beyond loopback" in r.getMessage()
    ]
    assert [
        key
        for key in ("read_api", "metrics")
        if any(f"operators.{key}" in text for text in warnings)
    ] == warned


# -- /metrics behind a token: Prometheus's authorization and basic_auth --------------------------


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def token_service(
    make_service: Callable[..., CollectorService],
) -> Iterator[tuple[TestClient[Any], CollectorService, dict[str, str]]]:
    service = make_service(
        [{**FS_RULE, "for": "0s"}], operators={"read_api": "token", "metrics": "token"}
    )
    tokens = {
        "agent": add_token(service.config.tokens_file, "web01"),
        "read-only": add_token(
            service.config.operator_tokens_file, "prometheus", role=ROLE_READ_ONLY
        ),
        "operator": add_token(service.config.operator_tokens_file, "alice"),
    }
    with TestClient(create_app(service)) as client:
        yield client, service, tokens


@pytest.mark.parametrize(
    ("credentials", "status"),
    cases(
        {
            "no credentials": (lambda t: None, 401),
            "Bearer read-only token": (lambda t: f"Bearer {t['read-only']}", 200),
            "Bearer operator token": (lambda t: f"Bearer {t['operator']}", 200),
            "Basic: any user, the token as password": (
                lambda t: basic("prometheus", t["read-only"]),
                200,
            ),
            "Basic: empty user name": (lambda t: basic("", t["read-only"]), 200),
            "Basic: wrong password": (lambda t: basic("prometheus", "rwt_wrong"), 401),
            "an agent token": (lambda t: f"Bearer {t['agent']}", 401),
            "Basic: token as user name": (lambda t: basic(t["read-only"], ""), 401),
        }
    ),
)
def test_metrics_behind_a_token_take_bearer_or_basic(
    token_service: tuple[TestClient[Any], CollectorService, dict[str, str]],
    credentials: Callable[[dict[str, str]], str | None],
    status: int,
) -> None:
    client, _, tokens = token_service
    header = credentials(tokens)
    answer = client.get("/metrics", headers={"Authorization": header} if header else {})
    assert answer.status_code == status, answer.text
    if status == 200:
        assert "# TYPE runwatch_" in answer.text


def test_the_read_api_takes_basic_credentials_too(
    token_service: tuple[TestClient[Any], CollectorService, dict[str, str]],
) -> None:
    client, _, tokens = token_service
    answer = client.get(
        "/api/v1/hosts", headers={"Authorization": basic("anyone", tokens["read-only"])}
    )
    assert answer.status_code == 200


def test_what_is_served_without_a_token(
    token_service: tuple[TestClient[Any], CollectorService, dict[str, str]], clock: FakeClock
) -> None:
    client, _, tokens = token_service
    report = encode(Reporter("web01", clock).report({"fs_used_ratio": 0.5}))
    assert (
        client.post(
            "/api/v1/reports",
            content=report,
            headers={"Authorization": f"Bearer {tokens['agent']}"},
        ).status_code
        == 202
    )
    # Liveness for load balancers: no fleet figures for anyone without a token.
    assert set(client.get("/healthz").json()) == {"status", "version"}
    # The API's description is the code's, not the fleet's.
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/schema/openapi.json").status_code == 200
    # The console asks to sign in.
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert client.get("/login").status_code == 200
    for path in ("/api/v1/hosts", "/api/v1/calls", "/api/v1/outbox", "/metrics"):
        assert client.get(path).status_code == 401, path


def test_healthz_shows_the_host_count_while_the_read_api_is_open(
    make_service: Callable[..., CollectorService],
) -> None:
    with TestClient(create_app(make_service())) as client:
        assert client.get("/healthz").json()["hosts"] == 0


# -- the Host check: DNS rebinding ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "allowed"),
    cases(
        {
            "IPv4 loopback": ("127.0.0.1:9330", True),
            "IPv6 loopback": ("[::1]:9330", True),
            "localhost": ("localhost:9330", True),
            "localhost, capitals and a final dot": ("LOCALHOST.", True),
            "a *.localhost name": ("grafana.localhost", True),
            "an IP literal cannot be rebound": ("10.1.2.3:9330", True),
            "an IPv6 literal": ("[fe80::1]", True),
            "external_url's host": ("collector.example.org:443", True),
            "an allowed_hosts glob": ("c7.example.net", True),
            "no Host header: not a browser": ("", True),
            "another site": ("evil.example", False),
            "a name that starts like an address": ("127.0.0.1.evil.example", False),
            "a name that starts like localhost": ("localhost.evil.example", False),
            "the glob's parent domain": ("example.net", False),
        }
    ),
)
def test_the_host_check_allows_the_collector_s_own_names(
    tmp_path: Path, header: str, allowed: bool
) -> None:
    config = collector_config(
        tmp_path, external_url="https://collector.example.org", allowed_hosts=["*.example.net"]
    )
    policy = HostPolicy.from_config(config, machine_names=("vm", "vm.example.com"))
    assert policy.allows(header) is allowed


def test_the_host_check_allows_this_machine_s_names_and_star_allows_everything(
    tmp_path: Path,
) -> None:
    config = collector_config(tmp_path, allowed_hosts=["testserver.local"])
    policy = HostPolicy.from_config(config, machine_names=("vm", "vm.example.com"))
    assert policy.allows("vm:9330") and policy.allows("VM.example.com")
    assert not policy.allows("evil.example")
    assert HostPolicy.from_config(
        collector_config(tmp_path, allowed_hosts=["*"]), machine_names=()
    ).allows("evil.example")


def test_a_rebinding_request_to_a_loopback_collector_gets_421(
    make_service: Callable[..., CollectorService],
) -> None:
    service = make_service()
    with TestClient(create_app(service)) as client:
        answer = client.get("/api/v1/hosts", headers={"Host": "evil.example"})
        assert client.get("/api/v1/hosts", headers={"Host": "127.0.0.1:9330"}).status_code == 200
    assert answer.status_code == 421
    assert answer.json()["error"] == "misdirected"
    assert "evil.example" in answer.json()["message"]
    assert "allowed_hosts" in answer.json()["message"]


def test_an_agent_reports_through_a_dns_alias_with_its_token(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make_service(listen="0.0.0.0:9330")
    token = add_token(service.config.tokens_file, "web01")
    report = encode(Reporter("web01", clock).report({"fs_used_ratio": 0.5}))
    with TestClient(create_app(service)) as client:
        answer = client.post(
            "/api/v1/reports",
            content=report,
            headers={"Authorization": f"Bearer {token}", "Host": "monitoring.example.net:9330"},
        )
    assert answer.status_code == 202, answer.text


# -- outbox repairs: operators only, audited ------------------------------------------------------


def dead_letter(service: CollectorService, clock: FakeClock) -> int:
    """A call in the register and one operation of it a help desk refused for good."""
    token = add_token(service.config.tokens_file, "web01")
    with TestClient(create_app(service)) as client:
        client.post(
            "/api/v1/reports",
            headers={"Authorization": f"Bearer {token}"},
            content=encode(Reporter("web01", clock).report({"fs_used_ratio": 0.99})),
        )
    (call,) = service.calls("open", None)
    with service.store.transaction():
        op_id = service.store.enqueue(OutboxOp(0, call.id, "helpdesk", "update", {}, clock()))
        service.store.mark_dead(op_id, "400 refused")
    return op_id


def test_outbox_repairs_need_an_operator_and_are_audited(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> None:
    service = make_service([{**FS_RULE, "for": "0s"}])
    op_id = dead_letter(service, clock)
    operator = add_token(service.config.operator_tokens_file, "alice")
    reader = add_token(service.config.operator_tokens_file, "rob", role=ROLE_READ_ONLY)
    with TestClient(create_app(service)) as client:
        cross_site = client.post("/api/v1/outbox/retry", headers={"Origin": "http://evil.example"})
        read_only = client.post(
            "/api/v1/outbox/retry", headers={"Authorization": f"Bearer {reader}"}
        )
        assert service.store.list_ops("dead", 10), "nothing was retried by those"
        retried = client.post(
            "/api/v1/outbox/retry",
            params={"op_id": op_id},
            headers={"Authorization": f"Bearer {operator}"},
        )
        with service.store.transaction():
            service.store.mark_dead(op_id, "400 refused again")
        discarded = client.post(
            "/api/v1/outbox/discard",
            params={"op_id": op_id},
            headers={"Authorization": f"Bearer {operator}"},
        )
        audit = client.get("/api/v1/audit", headers={"Authorization": f"Bearer {reader}"}).json()
    assert cross_site.status_code == 401
    assert read_only.status_code == 403
    assert retried.json() == {"retried": 1}
    assert discarded.json() == {"discarded": 1}
    assert [(e["actor"], e["action"], e["target"], e["via"]) for e in audit[:2]] == [
        ("alice", "outbox.discard", f"outbox operation {op_id}", "api"),
        ("alice", "outbox.retry", f"outbox operation {op_id}", "api"),
    ]


@pytest.fixture
def served(
    make_service: Callable[..., CollectorService],
) -> Iterator[Callable[[CollectorService], str]]:
    """Serve a service on a loopback port for CLI commands; return its URL."""
    servers: list[tuple[uvicorn.Server, threading.Thread, Any]] = []

    def serve(service: CollectorService) -> str:
        sock = bind("127.0.0.1", 0)
        server = uvicorn.Server(
            uvicorn.Config(create_app(service), log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        servers.append((server, thread, sock))
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return url_of(sock)

    yield serve
    for server, thread, sock in servers:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_outbox_commands_send_the_operator_token(
    make_service: Callable[..., CollectorService],
    served: Callable[[CollectorService], str],
    clock: FakeClock,
    *,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    service = make_service([{**FS_RULE, "for": "0s"}])
    op_id = dead_letter(service, clock)
    token_file = tmp_path / "alice.token"
    token_file.write_text(add_token(service.config.operator_tokens_file, "alice") + "\n")
    url = served(service)
    monkeypatch.delenv("RUNWATCH_OPERATOR_TOKEN_FILE", raising=False)
    monkeypatch.delenv("RUNWATCH_OPERATOR_TOKEN", raising=False)
    assert main(["outbox", "retry", "--all", "--collector", url]) == 1
    assert "needs an operator token" in capsys.readouterr().err
    assert (
        main(["outbox", "retry", "--all", "--collector", url, "--token-file", str(token_file)]) == 0
    )
    assert "1 dead letter(s) put back in line" in capsys.readouterr().out
    with service.store.transaction():
        service.store.mark_dead(op_id, "400 refused again")
    monkeypatch.setenv("RUNWATCH_OPERATOR_TOKEN_FILE", str(token_file))
    assert main(["outbox", "discard", str(op_id), "--collector", url]) == 0
    assert "1 dead letter(s) discarded" in capsys.readouterr().out


# -- CLI changes to tokens and users reach the audit log ------------------------------------------


def test_token_and_user_changes_by_the_cli_are_in_the_audit_log(
    make_service: Callable[..., CollectorService],
    store_backend: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("SUDO_USER", raising=False)
    service = make_service()
    config = tmp_path / "collector.yaml"
    config.write_text(
        yaml.safe_dump({"data_dir": str(service.config.data_dir), "store": store_backend})
    )
    where = ["--config", str(config)]
    assert main(["token", "add", "web09", *where]) == 0
    assert main(["token", "add", "web09", "--replace", *where]) == 0
    assert main(["token", "revoke", "web09", *where]) == 0
    assert main(["token", "add", "grafana", "--operator", "--read-only", *where]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a long passphrase\n"))
    assert main(["user", "add", "carol", "--password-stdin", *where]) == 0
    assert main(["user", "remove", "carol", *where]) == 0
    capsys.readouterr()
    reader = add_token(service.config.operator_tokens_file, "rob", role=ROLE_READ_ONLY)
    with TestClient(create_app(service)) as client:
        audit = client.get("/api/v1/audit", headers={"Authorization": f"Bearer {reader}"})
    me = f"cli:{pwd.getpwuid(os.geteuid()).pw_name}"
    assert [
        (e["actor"], e["action"], e["target"], e["detail"], e["via"])
        for e in reversed(audit.json())
    ] == [
        (me, "token.add", "host web09", "", "cli"),
        (me, "token.add", "host web09", "token replaced", "cli"),
        (me, "token.revoke", "host web09", "", "cli"),
        (me, "operator_token.add", "operator grafana", "read-only", "cli"),
        (me, "user.add", "user carol", "operator", "cli"),
        (me, "user.remove", "user carol", "", "cli"),
    ]
    assert not any(json.dumps(e).count("rwt_") for e in audit.json()), "no token in the log"


def test_a_token_change_without_a_collector_config_says_it_is_not_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "add", "web01", "--tokens-file", str(tmp_path / "t")]) == 0
    assert "not recorded in an audit log" in capsys.readouterr().err
