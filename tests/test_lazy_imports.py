"""What importing a module loads: the collector's config must not load the help desk client."""

from __future__ import annotations

import subprocess
import sys

import pytest


def loaded_after(statement: str, module: str) -> bool:
    """Whether `module` is in sys.modules after `statement`, in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{statement}\nprint({module!r} in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip() == "True"


@pytest.mark.parametrize(
    "statement",
    [
        pytest.param("import collector.config", id="the collector's config"),
        pytest.param(
            "from collector.config import collector_config_from_dict\n"
            "collector_config_from_dict({'sinks': {'desk': {'type': 'redmine', "
            "'url': 'http://127.0.0.1:1', 'api_key': {'env': 'RW_KEY'}, 'project': 'p'}}})",
            id="a config naming a help desk, loaded",
        ),
    ],
)
def test_the_collector_config_does_not_load_httpx(statement: str) -> None:
    assert not loaded_after(statement, "httpx")


def test_building_a_help_desk_adapter_loads_httpx() -> None:
    statement = (
        "from collector.config import collector_config_from_dict\n"
        "from collector.sinks.adapters import build_sinks\n"
        "config = collector_config_from_dict({'sinks': {'desk': {'type': 'redmine', "
        "'url': 'http://127.0.0.1:1', 'api_key': {'env': 'RW_KEY'}, 'project': 'p'}}})\n"
        "build_sinks(config.sinks)"
    )
    assert loaded_after(statement, "httpx")
