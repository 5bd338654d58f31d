"""Safe silences: no wildcard defaults, a preview of the hosts and rules a silence matches, and
a second confirmation for a silence over `silences.confirm_over` of the fleet, enforced by the
server in the console, the API and the CLI."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from checks.settings import ConfigError
from collector.api.application import create_app
from collector.app import CollectorService
from collector.auth import ROLE_READ_ONLY, add_token, set_user
from collector.config import collector_config_from_dict
from runwatch.cli import main
from runwatch.cli import silences as silence_cli
from runwatch.cli.common import CommandError
from tests.helpers import FS_RULE, FakeClock, Reporter

FAST_FS = {**FS_RULE, "for": "0s"}
LOAD = {**FAST_FS, "name": "load_high", "metric": "load_ratio"}
HOSTS = ("web01", "web02", "web03", "web04", "web05", "db01", "db02", "db03", "db04", "db05")


@pytest.fixture
def api(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> Iterator[tuple[TestClient[Any], CollectorService, dict[str, str]]]:
    """Ten hosts: five web, five db; two rules besides the built-in ones."""
    service = make_service([FAST_FS, LOAD], silences={"confirm_over": 0.3})
    for host in HOSTS:
        service.ingest(host, Reporter(host, clock).report({"fs_used_ratio": 0.5}))
    tokens = {
        "alice": add_token(service.config.operator_tokens_file, "alice"),
        "rob": add_token(service.config.operator_tokens_file, "rob", role=ROLE_READ_ONLY),
    }
    set_user(service.config.users_file, "carol", "carol-secret-1")
    with TestClient(create_app(service)) as client:
        yield client, service, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_in(client: TestClient[Any]) -> str:
    answer = client.post(
        "/login", data={"user": "carol", "password": "carol-secret-1"}, follow_redirects=False
    )
    assert answer.status_code == 303
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/silences").text)
    assert found
    return found[1]


def test_confirm_over_is_checked_at_load_with_its_key_path() -> None:
    base = {
        "sinks": {"helpdesk": {"type": "builtin"}},
        "groups": {"ops": {"sink": "helpdesk", "assign": "Operations"}},
    }
    assert collector_config_from_dict(base).silences.confirm_over == 0.2
    assert collector_config_from_dict({**base, "silences": {"confirm_over": 1}}).silences
    for bad in (1.5, -0.1):
        with pytest.raises(ConfigError) as caught:
            collector_config_from_dict({**base, "silences": {"confirm_over": bad}})
        assert caught.value.path == "silences -> confirm_over"
        assert "share from 0 to 1" in caught.value.message
    with pytest.raises(ConfigError) as caught:
        collector_config_from_dict({**base, "silences": {"confirm_above": 0.1}})
    assert caught.value.path == "silences -> confirm_above"


def test_the_reach_of_a_silence(api: Any) -> None:
    _client, service, _tokens = api
    web = service.silence_reach("web*", "filesystem_*")
    assert web.hosts == ["web01", "web02", "web03", "web04", "web05"]
    assert web.rules == ["filesystem_full"]
    assert (web.fleet_size, web.share, web.needs_confirmation) == (10, 0.5, True)
    assert web.summary() == "5 of 10 hosts (50.0% of the fleet) and 1 rule"
    three = service.silence_reach("web0[123]", "*")
    builtin = ["call_storm", "check_stale", "host_stale"]
    assert three.rules == sorted([*builtin, "filesystem_full", "load_high"])
    assert (three.share, three.needs_confirmation) == (0.3, False), "at the share: no question"
    nothing = service.silence_reach("*", "no_such_rule")
    assert (len(nothing.hosts), nothing.rules, nothing.share) == (10, [], 0.0)
    assert not nothing.needs_confirmation, "matches no rule: holds nothing back"
    later = service.silence_reach("mail*", "*")
    assert (later.hosts, later.needs_confirmation) == ([], False)


def test_the_form_has_no_wildcard_defaults(api: Any) -> None:
    client, _service, _tokens = api
    sign_in(client)
    page = client.get("/silences").text
    for field in ("silence-host", "silence-rule", "silence-duration", "silence-reason"):
        tag = re.search(rf'<input [^>]*id="{field}"[^>]*>', page)
        assert tag, field
        assert 'value=""' in tag[0] and "required" in tag[0], tag[0]
    assert 'value="*"' not in page
    assert '<datalist id="silence-durations">' in page, "durations are offered, not preset"
    assert 'id="preview-silence"' in page and '<script src="/static/silences.js"' in page
    filled = client.get("/silences", params={"host": "web01"}).text
    assert re.search(r'id="silence-host" value="web01"', filled), "a link may fill a glob in"


def test_preview_without_script_then_the_second_confirmation(api: Any, clock: FakeClock) -> None:
    client, service, _tokens = api
    csrf = sign_in(client)
    form = {"csrf": csrf, "host": "web*", "rule": "*", "duration": "2h", "reason": "rack move"}
    empty = client.post("/silences", data={**form, "host": " "})
    assert empty.status_code == 422 and "give the hosts to silence" in empty.text
    no_rule = client.post("/silences", data={**form, "rule": ""})
    assert no_rule.status_code == 422 and "give the rules to silence" in no_rule.text

    preview = client.post("/silences", data={**form, "do": "preview"})
    assert preview.status_code == 200
    text = preview.text
    assert "Matches 5 of 10 hosts (50.0% of the fleet) and 5 rules" in text
    for host in HOSTS[:5]:
        assert f"<li>{host}</li>" in text
    assert "<li>db01</li>" not in text and "<li>load_high</li>" in text
    assert 'id="confirm-fleet-share"' in text and "30.0% of the fleet" in text
    assert 'id="silence-reason" value="rack move"' in text, "the form keeps what was typed"
    assert service.store.list_silences(None) == []

    unconfirmed = client.post("/silences", data=form)
    assert unconfirmed.status_code == 409 and "second confirmation" in unconfirmed.text
    assert 'id="confirm-fleet-share"' in unconfirmed.text
    # A confirmation given for other globs does not hold for these.
    other = {"confirm_fleet_share": "yes", "confirmed_host": "web0*", "confirmed_rule": "*"}
    assert client.post("/silences", data={**form, **other}).status_code == 409
    assert service.store.list_silences(None) == []
    confirmed = {**other, "confirmed_host": "web*"}
    saved = client.post("/silences", data={**form, **confirmed}, follow_redirects=False)
    assert saved.status_code == 303
    (silence,) = service.store.list_silences(None)
    assert (silence.host_pattern, silence.rule_pattern) == ("web*", "*")
    assert silence.created_by == "carol"
    assert silence.ends_at - silence.starts_at == 7200

    narrow = {**form, "host": "db01", "rule": "filesystem_full"}
    assert client.post("/silences", data=narrow, follow_redirects=False).status_code == 303
    too_long = client.post("/silences", data={**narrow, "duration": "4000d"})
    assert too_long.status_code == 422 and "ten years" in too_long.text
    no_reason = client.post("/silences", data={**narrow, "reason": " "})
    assert no_reason.status_code == 422 and "say why" in no_reason.text
    assert [a.action for a in service.store.list_audit(10)] == ["silence.add", "silence.add"]


def test_the_preview_fragment_for_the_script(api: Any) -> None:
    client, _service, _tokens = api
    assert client.get("/silences/preview", params={"host": "*", "rule": "*"}).status_code == 401
    sign_in(client)
    answer = client.get(
        "/silences/preview", params={"host": "db0[12]", "rule": "load_*", "duration": "1h"}
    )
    assert answer.status_code == 200
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    assert "<html" not in answer.text, "a fragment, not a page"
    assert "Matches 2 of 10 hosts (20.0% of the fleet) and 1 rule" in answer.text
    assert "until " in answer.text and 'id="confirm-fleet-share"' not in answer.text
    wide = client.get("/silences/preview", params={"host": "*", "rule": "*"})
    assert 'id="confirm-fleet-share"' in wide.text
    assert 'name="confirmed_host" value="*"' in wide.text
    bad = client.get("/silences/preview", params={"host": "", "rule": "*"})
    assert bad.status_code == 422 and "give the hosts" in bad.text


def test_the_api_needs_globs_and_the_confirmation(api: Any) -> None:
    client, service, tokens = api
    alice = bearer(tokens["alice"])
    body = {"host": "*", "rule": "filesystem_full", "duration": "1h", "reason": "upgrade"}
    for missing in ("host", "rule"):
        partial = {k: v for k, v in body.items() if k != missing}
        answer = client.post("/api/v1/silences", json=partial, headers=alice)
        assert answer.status_code == 400 and missing in answer.text, "no default glob"
    blank = client.post("/api/v1/silences", json={**body, "host": "  "}, headers=alice)
    assert blank.status_code == 422 and blank.json()["field"] == "host"
    wide = client.post("/api/v1/silences", json=body, headers=alice)
    assert wide.status_code == 409
    assert wide.json() == {
        "error": "confirm",
        "message": "This silence matches 10 of 10 hosts (100.0% of the fleet) and 1 rule: more "
        "than the 30.0% of the fleet (silences.confirm_over) a silence may hold back without a "
        "second confirmation.",
        "field": "confirm_fleet_share",
    }
    assert service.store.list_silences(None) == []
    saved = client.post(
        "/api/v1/silences", json={**body, "confirm_fleet_share": True}, headers=alice
    )
    assert saved.status_code == 201 and saved.json()["host"] == "*"

    preview = client.get("/api/v1/silences/preview", params={"host": "web*", "rule": "*"})
    assert preview.status_code == 200
    assert preview.json() == {
        "host": "web*",
        "rule": "*",
        "host_count": 5,
        "fleet_size": 10,
        "share": 0.5,
        "confirm_over": 0.3,
        "needs_confirmation": True,
        "hosts": ["web01", "web02", "web03", "web04", "web05"],
        "hosts_not_listed": 0,
        "rules": ["call_storm", "check_stale", "filesystem_full", "host_stale", "load_high"],
    }
    missing = client.get("/api/v1/silences/preview", params={"host": "web*"})
    assert missing.status_code == 400


def test_the_cli_previews_and_confirms(
    api: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`runwatch silence preview` and `add --confirm-fleet-share` (the requests go to the app in
    process; tests/test_silences_api.py runs the commands against a real collector)."""
    client, service, tokens = api

    def send(url: str, path: str, method: str, token: str, body: Any = None) -> Any:
        answer = client.request(method, path, json=body, headers=bearer(token))
        if answer.status_code >= 400:
            message = answer.json()["message"]
            raise CommandError(f"{url}{path}: HTTP {answer.status_code}: {message}")
        return answer.json()

    def get(url: str, path: str, params: Any = None) -> Any:
        return client.get(path, params=params).json()

    monkeypatch.setattr(silence_cli, "collector_send", send)
    monkeypatch.setattr(silence_cli, "collector_get", get)
    monkeypatch.setenv("RUNWATCH_OPERATOR_TOKEN", tokens["alice"])
    monkeypatch.delenv("RUNWATCH_OPERATOR_TOKEN_FILE", raising=False)
    assert main(["silence", "preview", "--host", "db*", "--rule", "load_high"]) == 0
    out = capsys.readouterr().out
    assert "host db* rule load_high: 5 of 10 hosts (50.0% of the fleet), 1 rules" in out
    assert "hosts: db01, db02, db03, db04, db05" in out
    assert "needs --confirm-fleet-share" in out
    add = ["silence", "add", "--host", "db*", "--rule", "load_high", "--for", "1h"]
    assert main([*add, "--reason", "patching"]) == 1
    err = capsys.readouterr().err
    assert "silences.confirm_over" in err and "runwatch silence preview --host 'db*'" in err
    assert service.store.list_silences(None) == []
    assert main([*add, "--reason", "patching", "--confirm-fleet-share"]) == 0
    assert "silence 1: host db* rule load_high" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        main(["silence", "add", "--for", "1h", "--reason", "no globs"])
    assert usage.value.code == 2
    assert "--host" in capsys.readouterr().err
