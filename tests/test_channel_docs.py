"""The pages of docs/channels/ (one per kind of channel) and the storm example of
docs/notifications.md: each example loads and is validated as written, with its URL taken from
the page (apprise must know it); e-mail, JSON, form and ntfy are also sent through for real, to
postfix and dovecot and to receivers on loopback. Only the servers' addresses are swapped."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import yaml

from checks.settings import ConfigError
from collector.app import CollectorService
from collector.config import load_collector_config
from tests import mailserver
from tests.fakes.ntfy import HookReceiver, NtfyServer
from tests.helpers import FakeClock
from tests.procs import Processes
from tests.test_notify_docs import BASE, collector, critical_then_resolved

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted((DOCS / "channels").glob("*.md"))
EXAMPLE = re.compile(r"<!-- example: ([\w-]+) -->\n```yaml\n(.*?)```", re.S)
URL = re.compile(r"<!-- url(?:: ([\w-]+))? -->\n```text\n(.*?)\n```", re.S)
ENV = re.compile(r"\{env: (\w+)\}")


def examples(page: Path) -> dict[str, str]:
    return dict(EXAMPLE.findall(page.read_text(encoding="utf-8")))


def page_urls(page: Path) -> dict[str, str]:
    """The URLs a page shows, by the example they belong to ('' for the page's only one)."""
    return {name: url.strip() for name, url in URL.findall(page.read_text(encoding="utf-8"))}


def example(page: str, name: str) -> str:
    return examples(DOCS / "channels" / f"{page}.md")[name]


CASES = [
    pytest.param(page, name, id=f"{page.stem}: {name}") for page in PAGES for name in examples(page)
]


@pytest.fixture
def services() -> Iterator[list[CollectorService]]:
    made: list[CollectorService] = []
    yield made
    for service in made:
        service.close()


def test_every_kind_of_channel_has_a_page_with_an_example_in_the_nav() -> None:
    nav = (DOCS.parent / "mkdocs.yml").read_text(encoding="utf-8")
    kinds = {page.stem for page in PAGES}
    assert kinds >= {
        "email",
        "webhooks",
        "ntfy",
        "slack",
        "teams",
        "matrix",
        "telegram",
        "gotify",
        "paging",
    }
    for page in PAGES:
        assert examples(page), f"{page.name} has no example"
        assert f"channels/{page.name}" in nav, f"{page.name} is not in mkdocs.yml's nav"


@pytest.mark.parametrize(("page", "name"), CASES)
def test_each_example_loads_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page: Path, name: str
) -> None:
    text = examples(page)[name]
    urls = page_urls(page)
    for variable in ENV.findall(text):
        if "PASSWORD" in variable:
            monkeypatch.setenv(variable, "example-password")
        else:
            # The URL the page shows, which apprise must know.
            monkeypatch.setenv(variable, urls.get(name) or urls[""])
    data = {**BASE, "data_dir": str(tmp_path / "data"), **yaml.safe_load(text)}
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_collector_config(path)
    notify = config.notifications
    assert notify.channels and notify.rules
    for rule in notify.rules:
        assert set(rule.channels) <= set(notify.channels)


def test_a_bad_url_on_a_page_would_be_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above means something: a URL apprise does not know fails the load."""
    monkeypatch.setenv("RUNWATCH_SLACK_URL", "slack://not-enough-tokens")
    data = {**BASE, "data_dir": str(tmp_path / "data"), **yaml.safe_load(example("slack", "slack"))}
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="ops-slack -> url"):
        load_collector_config(path)


@pytest.mark.skipif(bool(mailserver.missing()), reason=str(mailserver.missing()))
def test_the_email_page_delivers(
    tmp_path: Path,
    services: list[CollectorService],
    clock: FakeClock,
    processes: Processes,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mail = mailserver.start_mail_system(processes, ["ops", "oncall", "runwatch"])
    try:
        monkeypatch.setenv("RUNWATCH_SMTP_PASSWORD", mailserver.PASSWORD)
        data: dict[str, Any] = yaml.safe_load(example("email", "email"))
        smtp = data["notifications"]["channels"]["ops-mail"]["smtp"]
        smtp.update(host="127.0.0.1", port=mail.smtp_port, ca_file=str(mail.ca_file))
        service = collector(tmp_path, services, yaml.safe_dump(data), clock)
        assert critical_then_resolved(service, clock) == 2
        for person in ("ops", "oncall"):
            box = mailserver.Mailbox(mail, person)
            opened, resolved = box.wait_for(2)
            box.close()
            assert resolved["In-Reply-To"] == opened["Message-ID"]
        assert "sasl_username=runwatch" in mail.log()
    finally:
        mail.close()


@pytest.mark.parametrize(
    ("name", "path"), [("json", "/runwatch"), ("form", "/forms/runwatch")], ids=["json", "form"]
)
def test_the_webhook_page_delivers(
    tmp_path: Path, services: list[CollectorService], clock: FakeClock, name: str, path: str
) -> None:
    with HookReceiver() as hook:
        text = example("webhooks", name).replace(
            "hooks.example.org", hook.url.removeprefix("http://")
        )
        service = collector(tmp_path, services, text, clock)
        assert critical_then_resolved(service, clock) == 2
        bodies = [body for got, _, body in hook.received if got == path]
        if name == "json":
            fields = [json.loads(body) for body in bodies]
        else:
            fields = [{k: v[0] for k, v in parse_qs(body.decode()).items()} for body in bodies]
        assert [f["type"] for f in fields] == ["failure", "success"]
        assert fields[0]["title"].startswith("[runwatch #")


def test_the_ntfy_page_delivers(
    tmp_path: Path,
    services: list[CollectorService],
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shown = page_urls(DOCS / "channels" / "ntfy.md")[""]
    token = shown.split("://")[1].split("@")[0]
    with NtfyServer(token=token) as ntfy:
        port = ntfy.url.rpartition(":")[2]
        monkeypatch.setenv("RUNWATCH_NTFY_URL", f"ntfy://{token}@127.0.0.1:{port}/ops")
        service = collector(tmp_path, services, example("ntfy", "ntfy"), clock)
        assert critical_then_resolved(service, clock) == 2
        assert [m["topic"] for m in ntfy.messages] == ["ops", "ops"]


def test_the_storm_example_of_the_notifications_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (DOCS / "notifications.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- example: storm -->\n```yaml\n(.*?)```", text, re.S)
    assert found
    monkeypatch.setenv("RUNWATCH_SMTP_PASSWORD", "example-password")
    data = {**BASE, "data_dir": str(tmp_path / "data"), **yaml.safe_load(found.group(1))}
    path = tmp_path / "collector.yaml"
    path.write_text(yaml.safe_dump(data))
    config = load_collector_config(path)
    notify = config.notifications
    assert notify.rate_limit is not None
    assert (notify.rate_limit.messages, float(notify.rate_limit.per)) == (10, 900.0)
    assert (float(notify.storm.wait), float(notify.storm.update_every)) == (30.0, 900.0)
    assert config.storm.max_calls == 20
