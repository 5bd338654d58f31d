"""The `notifications:` section is checked at load: each mistake names its key path, secrets are
read once (never shown), apprise URLs are parsed, and secret files are relative to the config."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from checks.settings import ConfigError
from collector.config import load_collector_config
from collector.notify.config import AppriseChannelConfig, EmailChannelConfig

BASE = """\
listen: "127.0.0.1:9330"
sinks:
  helpdesk: {type: builtin}
groups:
  ops: {sink: helpdesk, assign: Operations}
"""
MAIL = """\
notifications:
  channels:
    ops-mail:
      type: email
      smtp: {host: mail.example.org, username: runwatch, password: {file: smtp.password}}
      from: runwatch@example.org
      to: [ops@example.org]
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "collector.yaml"
    path.write_text(BASE + textwrap.dedent(text))
    return load_collector_config(path)


def refused(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        (
            "notifications: {channels: {pager: {type: sms, url: x}}}",
            "notifications -> channels -> pager -> type",
            "known channel types: email, apprise",
        ),
        (
            "notifications: {channels: {'bad name': {type: apprise, url: 'json://h'}}}",
            "notifications -> channels -> bad name",
            "letters, digits",
        ),
        (
            "notifications: {channels: {m: {type: email, smtp: {host: h}, from: runwatch, "
            "to: [a@b.c]}}}",
            "notifications -> channels -> m -> from",
            "expected an address",
        ),
        (
            "notifications: {channels: {m: {type: email, smtp: {host: h, security: none, "
            "username: u, password: {env: X}}, from: r@b.c, to: [a@b.c]}}}",
            "notifications -> channels -> m -> smtp -> security",
            "only sent over TLS",
        ),
        (
            "notifications: {channels: {m: {type: email, smtp: {host: h, username: u}, "
            "from: r@b.c, to: [a@b.c]}}}",
            "notifications -> channels -> m -> smtp -> password",
            "both username and password",
        ),
        (
            "notifications: {channels: {m: {type: email, smtp: {host: h}, from: r@b.c, to: []}}}",
            "notifications -> channels -> m -> to",
            "length >= 1",
        ),
        (
            "notifications: {channels: {c: {type: apprise, url: 'nosuchservice://x/y'}}}",
            "notifications -> channels -> c -> url",
            "apprise cannot use this URL",
        ),
        (
            "notifications: {channels: {c: {type: apprise, url: 'json://h'}}, "
            "rules: [{channels: [d]}]}",
            "notifications -> rules -> 1 -> channels",
            "unknown channel 'd' (channels: c)",
        ),
        (
            "notifications: {channels: {c: {type: apprise, url: 'json://h'}}, "
            "rules: [{channels: [c], groups: [dba]}]}",
            "notifications -> rules -> 1 -> groups",
            "unknown group 'dba' (groups: ops)",
        ),
        (
            "notifications: {channels: {c: {type: apprise, url: 'json://h'}}, "
            "rules: [{channels: [c], events: [paged]}]}",
            "notifications -> rules -> 1 -> events -> 1",
            "Invalid enum value 'paged'",
        ),
        (
            "notifications: {channels: {c: {type: apprise, url: 'json://h'}}, "
            "rules: [{channels: [c], quiet_hours: {start: '22:00', end: '07:00', "
            "timezone: Mars/Olympus}}]}",
            "notifications -> rules -> 1 -> quiet_hours -> timezone",
            "unknown time zone",
        ),
        (
            "notifications: {channels: {c: {type: apprise, url: 'json://h'}}, "
            "rules: [{channels: [c], quiet_hours: {start: '25:00', end: '07:00'}}]}",
            "notifications -> rules -> 1 -> quiet_hours -> start",
            "",
        ),
    ],
)
def test_mistakes_name_their_key(tmp_path: Path, text: str, path: str, words: str) -> None:
    error = refused(tmp_path, text)
    assert error.path == path, error
    assert words in error.message, error


def test_a_missing_secret_is_refused_at_load_naming_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    error = refused(tmp_path, MAIL)
    assert error.path == "notifications -> channels -> ops-mail -> smtp -> password"
    assert f"cannot read secret file {tmp_path / 'smtp.password'}" in error.message
    monkeypatch.delenv("RUNWATCH_NTFY_URL", raising=False)
    error = refused(
        tmp_path,
        "notifications: {channels: {phones: {type: apprise, url: {env: RUNWATCH_NTFY_URL}}}}",
    )
    assert error.path == "notifications -> channels -> phones -> url"
    assert "environment variable RUNWATCH_NTFY_URL is not set" in error.message


def test_a_secret_file_is_relative_to_the_config_and_its_value_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "smtp.password").write_text("s3cret-smtp-password\n")
    config = load(tmp_path, MAIL)
    channel = config.notifications.channels["ops-mail"]  # type: ignore[attr-defined]
    assert isinstance(channel, EmailChannelConfig)
    assert channel.smtp.password is not None
    assert channel.smtp.password.file == str(tmp_path / "smtp.password")
    assert channel.smtp.effective_port == 587 and channel.id_domain == "example.org"
    assert "s3cret-smtp-password" not in repr(config)

    token_url = "ntfy://tk_abcdefghijklmnopqrstuvwxyz@ntfy.example.org/ops"
    monkeypatch.setenv("RUNWATCH_NTFY_URL", "nosuchservice://" + token_url.partition("://")[2])
    error = refused(
        tmp_path,
        "notifications: {channels: {phones: {type: apprise, url: {env: RUNWATCH_NTFY_URL}}}}",
    )
    assert "tk_abcdefghijklmnopqrstuvwxyz" not in str(error), "an unusable URL is not quoted"
    monkeypatch.setenv("RUNWATCH_NTFY_URL", token_url)
    config = load(
        tmp_path,
        "notifications: {channels: {phones: {type: apprise, url: {env: RUNWATCH_NTFY_URL}}}}",
    )
    phones = config.notifications.channels["phones"]  # type: ignore[attr-defined]
    assert isinstance(phones, AppriseChannelConfig)
    assert "tk_abcdefghijklmnopqrstuvwxyz" not in repr(config)
    assert phones.read_url() == token_url
