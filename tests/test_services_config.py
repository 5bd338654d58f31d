"""Bad service definitions are refused at load, naming the key path (and a cycle's services);
`runwatch config validate` exits 2 and says where."""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.settings import ConfigError
from collector.config import load_collector_config
from tests.helpers.cases import cases
from tests.test_config_errors import COLLECTOR_BASE, EXIT_USAGE, validate, write

RULES = """\
rules:
  - {name: disk_full, metric: fs_used_ratio, owner: ops, warning: 0.9}
  - {name: http_down, metric: http_errors_ratio, owner: ops, critical: 0.5}
"""


def services(text: str) -> dict[str, str]:
    return {"collector.yaml": COLLECTOR_BASE + RULES + "services:\n" + text}


GOOD = """\
  database:
    owner: ops
    components: [{hosts: [db01]}]
"""

BAD_SERVICES = cases(
    {
        "unknown owner": (
            services("  mail:\n    owner: dba\n    components: [{hosts: [mx1]}]\n"),
            "services -> mail -> owner",
            ["unknown group 'dba'", "groups: ops"],
        ),
        "a name that is not lowercase": (
            services("  Mail:\n    owner: ops\n    components: [{hosts: [mx1]}]\n"),
            "services -> Mail",
            ["lowercase letters"],
        ),
        "unknown key in a component": (
            services("  mail:\n    owner: ops\n    components: [{hosts: [mx1], rule: [x]}]\n"),
            "services -> mail -> components -> 1 -> rule",
            ["unknown key"],
        ),
        "no component": (
            services("  mail:\n    owner: ops\n    components: []\n"),
            "services -> mail -> components",
            ["length >= 1"],
        ),
        "a component of nothing": (
            services("  mail:\n    owner: ops\n    components: [{need: any}]\n"),
            "services -> mail -> components -> 1",
            ["needs `hosts`"],
        ),
        "hosts and a service in one component": (
            services(
                GOOD + "  shop:\n    owner: ops\n    components:\n"
                "      - {hosts: [web1], service: database}\n"
            ),
            "services -> shop -> components -> 1 -> service",
            ["not both"],
        ),
        "a host pattern that can match no host name": (
            services(
                "  mail:\n    owner: ops\n    components:\n"
                "      - {hosts: [mx1, 'https://mx2:25']}\n"
            ),
            "services -> mail -> components -> 1 -> hosts -> 2",
            ["can match no host name", "'https://mx2:25'"],
        ),
        "an empty host pattern": (
            services("  mail:\n    owner: ops\n    components: [{hosts: ['']}]\n"),
            "services -> mail -> components -> 1 -> hosts -> 1",
            ["may not be empty"],
        ),
        "unknown rule": (
            services(
                "  mail:\n    owner: ops\n    components:\n"
                "      - {hosts: [mx1], rules: [disk_full, smtp_down]}\n"
            ),
            "services -> mail -> components -> 1 -> rules -> 2",
            ["unknown rule 'smtp_down'", "disk_full", "host_stale", "http_down"],
        ),
        "unknown service as a component": (
            services("  shop:\n    owner: ops\n    components: [{service: databse}]\n"),
            "services -> shop -> components -> 1 -> service",
            ["unknown service 'databse'"],
        ),
        "unknown service as a dependency": (
            services(
                GOOD + "  shop:\n    owner: ops\n    components: [{hosts: [web1]}]\n"
                "    depends_on: [database, network]\n"
            ),
            "services -> shop -> depends_on -> 2",
            ["unknown service 'network'", "services: database, shop"],
        ),
        "a service that depends on itself": (
            services(
                "  shop:\n    owner: ops\n    components: [{hosts: [web1]}]\n"
                "    depends_on: [shop]\n"
            ),
            "services -> shop -> depends_on -> 1",
            ["cannot be made of itself"],
        ),
        "a dependency cycle through a component": (
            services(
                "  shop:\n    owner: ops\n    components: [{hosts: [web1]}]\n"
                "    depends_on: [payments]\n"
                "  payments:\n    owner: ops\n    components: [{service: ledger}]\n"
                "  ledger:\n    owner: ops\n    components: [{hosts: [db1]}]\n"
                "    depends_on: [shop]\n"
            ),
            "services -> ledger -> depends_on -> 1",
            ["dependency cycle: shop -> payments -> ledger -> shop"],
        ),
        "need more hosts than the component names": (
            services(
                "  files:\n    owner: ops\n    components:\n"
                "      - {hosts: [fs1, fs2, fs3], need: 4}\n"
            ),
            "services -> files -> components -> 1 -> need",
            ["at least 4 of 3 hosts"],
        ),
        "need more components than the service has": (
            services(
                "  files:\n    owner: ops\n    need: 3\n    components:\n"
                "      - {hosts: [fs1]}\n      - {hosts: [fs2]}\n"
            ),
            "services -> files -> need",
            ["at least 3 of 2 components"],
        ),
        "need zero": (
            services("  files:\n    owner: ops\n    components: [{hosts: ['fs*'], need: 0}]\n"),
            "services -> files -> components -> 1 -> need",
            [],
        ),
        "rules on a service component": (
            services(
                GOOD + "  shop:\n    owner: ops\n    components:\n"
                "      - {service: database, rules: [disk_full]}\n"
            ),
            "services -> shop -> components -> 1 -> rules",
            ["no rules"],
        ),
    }
)


@pytest.mark.parametrize(("files", "key_path", "words"), BAD_SERVICES)
def test_bad_service_is_refused_with_its_key_path(
    tmp_path: Path, files: dict[str, str], key_path: str, words: list[str]
) -> None:
    path = write(tmp_path, files)

    with pytest.raises(ConfigError) as raised:
        load_collector_config(path)

    assert raised.value.path == key_path
    assert raised.value.source == str(path)
    for word in words:
        assert word in raised.value.message


def test_validate_names_the_cycle_and_its_line(tmp_path: Path) -> None:
    (files, key_path, _) = next(
        case.values for case in BAD_SERVICES if case.id == "a dependency cycle through a component"
    )
    path = write(tmp_path, files)
    text = path.read_text().splitlines()
    line = text.index("    depends_on: [shop]") + 1

    result = validate(path)

    assert result.returncode == EXIT_USAGE, result.stderr
    assert f"{path}: {key_path}: dependency cycle: shop -> payments -> ledger -> shop" in (
        result.stderr
    )
    assert f"(line {line})" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_glob_may_need_more_hosts_than_it_has_today(tmp_path: Path) -> None:
    """How many hosts a glob or a label matches is known only once they report: `need: 4` of
    `fs*` loads (and is an outage while fewer than four serve)."""
    path = write(
        tmp_path,
        services("  files:\n    owner: ops\n    components: [{hosts: ['fs*'], need: 4}]\n"),
    )

    config = load_collector_config(path)

    assert config.services["files"].components[0].required == 4
