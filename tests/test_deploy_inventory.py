"""The deploy inventory: groups' defaults inherited, and every mistake named by its key path."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.deploy.agentconfig import AgentConfigRenderer
from agent.deploy.inventory import load_inventory
from checks.settings import ConfigError
from tests.helpers import RUNWATCH
from tests.helpers.cases import cases


def inventory(tmp_path: Path, **changes: Any) -> Path:
    data: dict[str, Any] = {
        "collector": {"url": "http://127.0.0.1:9330", "operator_token_file": "operator.token"},
        "groups": {
            "web": {"user": "deploy", "key": "keys/web", "port": 2222, "vars": {"interval": "30s"}},
            "eu": {"port": 22, "vars": {"region": "eu"}},
        },
        "hosts": {
            "web1": {"address": "10.0.0.1", "groups": ["web"]},
            "web2": {"address": "10.0.0.2", "groups": ["web", "eu"], "user": "root"},
        },
    }
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_hosts_inherit_their_groups_defaults(tmp_path: Path) -> None:
    loaded = load_inventory(inventory(tmp_path))
    web1, web2 = loaded.targets
    assert (web1.user, web1.port, web1.key) == ("deploy", 2222, tmp_path / "keys/web")
    assert web1.install_root == "/opt/runwatch"
    assert web1.vars == {"interval": "30s"}
    # Groups apply in the order listed, then the host's own settings.
    assert (web2.user, web2.port) == ("root", 22)
    assert web2.vars == {"interval": "30s", "region": "eu"}
    assert loaded.collector.operator_token_file == tmp_path / "operator.token"
    assert [t.name for t in loaded.select("eu")] == ["web2"]
    assert [t.name for t in loaded.select("web*")] == ["web1", "web2"]
    assert [t.name for t in loaded.select("nothing,web1")] == ["web1"]


def web1(**settings: Any) -> dict[str, Any]:
    """Inventory changes: the one host web1, at 10.0.0.1, with `settings`."""
    return {"hosts": {"web1": {"address": "10.0.0.1", **settings}}}


BAD = cases(
    {
        "no key on host nor group": (web1(), "hosts -> web1 -> key", "required key is missing"),
        "unknown group": (
            web1(groups=["web", "db"], key="k"),
            "hosts -> web1 -> groups -> 2",
            "unknown group 'db'",
        ),
        "misspelt key": (
            {"hosts": {"web1": {"adress": "10.0.0.1", "key": "k"}}},
            "hosts -> web1 -> adress",
            "unknown key",
        ),
        "port out of range": (web1(key="k", port=70000), "hosts -> web1 -> port", "<= 65535"),
        "group port not a number": (
            {"groups": {"web": {"port": "ssh"}}, "hosts": {"a": {"address": "x", "key": "k"}}},
            "groups -> web -> port",
            "Expected `int",
        ),
        "relative install root": (
            web1(key="k", install_root="opt/rw"),
            "hosts -> web1 -> install_root",
            "absolute path",
        ),
        "unknown service kind": (
            web1(key="k", service="upstart"),
            "hosts -> web1 -> service",
            "Invalid enum value 'upstart'",
        ),
        "two hosts, one machine, one root": (
            {
                "hosts": {
                    "a": {"address": "127.0.0.2", "key": "k", "install_root": "/srv/rw"},
                    "b": {"address": "127.0.0.2", "key": "k", "install_root": "/srv/rw"},
                }
            },
            "hosts -> b -> install_root",
            "already the install root of hosts -> a",
        ),
        "host name with a space": (
            {"hosts": {"web 1": {"address": "x", "key": "k"}}},
            "hosts -> web 1",
            "names here use",
        ),
        "no hosts": ({"hosts": {}}, "hosts", "at least one host"),
        "no collector": ({"collector": None}, "collector", "required key is missing"),
        "collector url without scheme": (
            {"collector": {"url": "127.0.0.1:9330", "operator_token_file": "t"}},
            "collector -> url",
            "must start with http://",
        ),
    }
)


@pytest.mark.parametrize(("changes", "path", "message"), BAD)
def test_mistakes_name_their_key_path(
    tmp_path: Path, changes: dict[str, Any], path: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_inventory(inventory(tmp_path, **changes))
    assert caught.value.path == path
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("variables", "path", "message"),
    cases(
        {
            "unknown check type": (
                {"checks": [{"type": "cpu"}, {"type": "nope"}]},
                "hosts -> web1 -> (agent config) -> checks -> 2 -> type",
                "known check types",
            ),
            "bad interval": (
                {"interval": "soon"},
                "hosts -> web1 -> (agent config) -> interval",
                "expected a duration",
            ),
            "reserved": ({"host": "other"}, "hosts -> web1 -> vars -> host", "deploy sets this"),
        }
    ),
)
def test_agent_config_is_rendered_and_validated_before_any_host_is_touched(
    tmp_path: Path, variables: dict[str, Any], path: str, message: str
) -> None:
    hosts = {"web1": {"address": "10.0.0.1", "key": "k", "vars": variables}}
    loaded = load_inventory(inventory(tmp_path, hosts=hosts))
    renderer = AgentConfigRenderer.from_file(None, loaded.collector.url)
    with pytest.raises(ConfigError) as caught:
        renderer.render(loaded.targets[0])
    assert caught.value.path == path
    assert message in caught.value.message


def test_rendered_config_carries_the_host_and_its_vars(tmp_path: Path) -> None:
    hosts = {
        "db1": {
            "address": "10.0.0.9",
            "key": "k",
            "install_root": "/srv/runwatch",
            "vars": {"interval": "15s", "checks": [{"type": "memory"}]},
        }
    }
    loaded = load_inventory(inventory(tmp_path, hosts=hosts))
    text = AgentConfigRenderer.from_file(None, loaded.collector.url).render(loaded.targets[0])
    config = yaml.safe_load(text)
    assert config["host"] == "db1"
    assert config["interval"] == "15s"
    assert config["checks"] == [{"type": "memory"}]
    assert config["collector"] == {
        "url": "http://127.0.0.1:9330",
        "token_file": "/srv/runwatch/etc/agent.token",
    }
    assert config["state_dir"] == "/srv/runwatch/state"


def test_cli_reports_an_inventory_mistake_with_exit_2(tmp_path: Path) -> None:
    path = inventory(tmp_path, hosts={"web1": {"address": "10.0.0.1"}})
    result = subprocess.run(
        [RUNWATCH, "deploy", "install", "--inventory", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "hosts -> web1 -> key" in result.stderr


@pytest.mark.parametrize(
    "words",
    [
        pytest.param(["deploy"], id="deploy"),
        *[
            pytest.param(["deploy", action], id=action)
            for action in ("install", "upgrade", "rollback", "status", "remove")
        ],
        pytest.param(["supervise"], id="supervise"),
    ],
)
def test_help(words: list[str]) -> None:
    result = subprocess.run(
        [RUNWATCH, *words, "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "usage: runwatch" in result.stdout
