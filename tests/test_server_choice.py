"""The HTTP parser and event loop the collector serves with (server: {http, loop}): the C ones
when installed, the pure-Python ones otherwise, and a named one that is missing refused at
load with its key path."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from checks.settings import ConfigError
from collector.config import ServerConfig, collector_config_from_dict
from collector.server import implementations

BASE: dict[str, Any] = {
    "listen": "127.0.0.1:9330",
    "sinks": {"helpdesk": {"type": "builtin"}},
    "groups": {"ops": {"sink": "helpdesk", "assign": "Operations"}},
}


def without(monkeypatch: pytest.MonkeyPatch, *missing: str) -> None:
    """Make these modules look uninstalled."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name in missing else find_spec(name, *args),
    )


def test_auto_takes_httptools_and_uvloop_when_installed() -> None:
    assert implementations(ServerConfig()) == ("httptools", "uvloop")
    assert implementations(ServerConfig(http="h11", loop="asyncio")) == ("h11", "asyncio")


def test_auto_falls_back_to_h11_and_asyncio_when_they_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    without(monkeypatch, "httptools", "uvloop")
    config = collector_config_from_dict(BASE)  # auto is never refused
    assert implementations(config.server) == ("h11", "asyncio")


@pytest.mark.parametrize(
    ("server", "key", "module"),
    [
        pytest.param({"http": "httptools"}, "server -> http", "httptools", id="http"),
        pytest.param({"loop": "uvloop"}, "server -> loop", "uvloop", id="loop"),
    ],
)
def test_a_named_implementation_that_is_not_installed_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch, server: dict[str, str], key: str, module: str
) -> None:
    without(monkeypatch, "httptools", "uvloop")
    with pytest.raises(ConfigError) as refused:
        collector_config_from_dict({**BASE, "server": server})
    assert refused.value.path == key
    assert f"{module} is not installed" in str(refused.value)
    assert "auto" in str(refused.value)


def test_an_unknown_implementation_is_refused_with_its_key() -> None:
    with pytest.raises(ConfigError) as refused:
        collector_config_from_dict({**BASE, "server": {"http": "granian"}})
    assert "server" in str(refused.value) and "http" in str(refused.value)
