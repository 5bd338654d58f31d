"""Bad configs are refused at load, naming the key path, and `runwatch config validate` exits 2."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from agent.config import agent_config_from_dict, load_agent_config
from checks.settings import ConfigError
from collector.config import collector_config_from_dict, load_collector_config
from tests.helpers.cases import cases

REPO = Path(__file__).resolve().parent.parent
EXIT_OK, EXIT_USAGE = 0, 2

# A collector config that is valid on its own; cases append to it.
COLLECTOR_BASE = """\
listen: "127.0.0.1:9330"
sinks:
  helpdesk: {type: builtin}
groups:
  ops: {sink: helpdesk, assign: Operations}
"""

AGENT_BASE = """\
collector: {url: "http://127.0.0.1:9"}
"""

# A rule that is valid under COLLECTOR_BASE, to put before the faulty one.
GOOD_RULE = "  - {name: load_high, metric: load5_per_core, owner: ops, warning: 2}\n"


def runwatch_argv() -> list[str]:
    """Return the command that runs the installed `runwatch` script, or the module if absent."""
    script = Path(sys.executable).with_name("runwatch")
    return [str(script)] if script.exists() else [sys.executable, "-m", "runwatch.cli"]


def validate(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run `runwatch config validate` on a file, as an admin would."""
    return subprocess.run(
        [*runwatch_argv(), "config", "validate", *extra, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def write(directory: Path, files: dict[str, str]) -> Path:
    """Write the files (name -> YAML) and return the first one, the config under test."""
    paths = []
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        paths.append(path)
    return paths[0]


def collector(extra: str) -> dict[str, str]:
    return {"collector.yaml": COLLECTOR_BASE + extra}


def agent(extra: str) -> dict[str, str]:
    return {"agent.yaml": AGENT_BASE + extra}


def rules(*lines: str) -> dict[str, str]:
    return collector("rules:\n" + "".join(lines))


BAD_CONFIGS = cases(
    {
        # -- collector -----------------------------------------------------------------------------
        "collector: unknown top-level key": (
            collector("retention: 30d\n"),
            (),
            "retention",
            ["unknown key"],
        ),
        "collector: unknown key inside a rule": (
            rules(
                GOOD_RULE,
                "  - {name: disk_full, metric: fs_used_ratio, owner: ops, warning: 0.9, "
                "severity: high}\n",
            ),
            (),
            "rules -> 2 -> severity",
            ["unknown key"],
        ),
        "collector: warning of the wrong type": (
            rules(
                GOOD_RULE,
                "  - {name: disk_full, metric: fs_used_ratio, owner: ops, warning: high}\n",
            ),
            (),
            "rules -> 2 -> warning",
            ["float"],
        ),
        "collector: warning not below critical, direction above": (
            rules(
                "  - {name: disk_full, metric: fs_used_ratio, owner: ops, "
                "warning: 0.95, critical: 0.85}\n"
            ),
            (),
            "rules -> 1 -> warning",
            ["must be below critical", "0.85"],
        ),
        "collector: warning not above critical, direction below": (
            rules(
                "  - {name: memory_low, metric: memory_available_bytes, owner: ops, "
                "direction: below, warning: 100, critical: 200}\n"
            ),
            (),
            "rules -> 1 -> warning",
            ["must be above critical", "200"],
        ),
        "collector: clear past the warning threshold": (
            rules(
                "  - {name: disk_full, metric: fs_used_ratio, owner: ops, "
                "warning: 0.85, critical: 0.95, clear: 0.9}\n"
            ),
            (),
            "rules -> 1 -> clear",
            ["must not be past the first threshold", "0.85", "0.9"],
        ),
        "collector: rule without an owner": (
            rules(GOOD_RULE, "  - {name: disk_full, metric: fs_used_ratio, warning: 0.9}\n"),
            (),
            "rules -> 2 -> owner",
            ["required key is missing"],
        ),
        "collector: rule owner is not a known group": (
            rules(
                GOOD_RULE,
                "  - {name: disk_full, metric: fs_used_ratio, owner: dba, warning: 0.9}\n",
            ),
            (),
            "rules -> 2 -> owner",
            ["unknown group 'dba'", "ops"],
        ),
        "collector: two rules with the same name": (
            rules(GOOD_RULE, GOOD_RULE),
            (),
            "rules -> 2 -> name",
            ["'load_high' is already defined", "rules -> 1"],
        ),
        "collector: group with an unknown sink": (
            collector("  dba: {sink: jira, assign: Databases}\n"),
            (),
            "groups -> dba -> sink",
            ["unknown sink 'jira'", "helpdesk"],
        ),
        "collector: bad duration": (
            rules(
                "  - {name: disk_full, metric: fs_used_ratio, owner: ops, warning: 0.9, "
                "for: 5 minutes}\n"
            ),
            (),
            "rules -> 1 -> for",
            ["expected a duration", "5 minutes"],
        ),
        "collector: malformed YAML gives line and column": (
            {"collector.yaml": "listen: '127.0.0.1:9330'\ngroups: ops: {sink: helpdesk}\n"},
            (),
            None,
            ["not valid YAML at line 2, column 12"],
        ),
        "collector: top level is a list": (
            {"collector.yaml": "- listen: '127.0.0.1:9330'\n- groups: {}\n"},
            (),
            None,
            ["top level must be a mapping"],
        ),
        "collector: listen without a port": (
            {"collector.yaml": COLLECTOR_BASE.replace('"127.0.0.1:9330"', "localhost")},
            (),
            "listen",
            ["expected HOST:PORT", "localhost"],
        ),
        "collector: listen port out of range": (
            {"collector.yaml": COLLECTOR_BASE.replace("9330", "99999")},
            (),
            "listen",
            ["expected HOST:PORT", "99999"],
        ),
        "collector: rule file glob matches nothing": (
            collector("rule_files: [rules/*.yaml, missing/*.yaml]\n")
            | {"rules/system.yaml": "rules: []\n"},
            (),
            "rule_files -> 2",
            ["no file matches 'missing/*.yaml'"],
        ),
        "collector: group name not allowed": (
            collector("  Databases: {sink: helpdesk, assign: Databases}\n"),
            (),
            "groups -> Databases",
            ["names here use lowercase"],
        ),
        "collector: unknown key inside a group": (
            collector("  dba: {sink: helpdesk, assign: Databases, escalate: yes}\n"),
            (),
            "groups -> dba -> escalate",
            ["unknown key"],
        ),
        "collector: evaluation interval of 0": (
            collector("evaluation_interval: 0s\n"),
            (),
            "evaluation_interval",
            ["must be at least"],
        ),
        # -- agent ---------------------------------------------------------------------------------
        "agent: unknown check type": (
            agent("checks:\n  - {type: load}\n  - {type: smart}\n"),
            (),
            "checks -> 2 -> type",
            ["'smart'"],
        ),
        "agent: unknown option key in a check": (
            agent("checks:\n  - {type: load}\n  - {type: filesystem, include_mountpoint: [/]}\n"),
            (),
            "checks -> 2 -> include_mountpoint",
            ["unknown key"],
        ),
        "agent: two checks with the same name": (
            agent("checks:\n  - {type: filesystem}\n  - {type: filesystem}\n"),
            (),
            "checks -> 2 -> name",
            ["'filesystem' is already used by checks -> 1", "distinct"],
        ),
        "agent: check named like another check's type": (
            agent("checks:\n  - {type: load}\n  - {type: memory, name: load}\n"),
            (),
            "checks -> 2 -> name",
            ["'load' is already used by checks -> 1"],
        ),
        "agent: collector url without a scheme": (
            {"agent.yaml": "collector: {url: '127.0.0.1:9330'}\n"},
            (),
            "collector -> url",
            ["must start with http:// or https://", "127.0.0.1:9330"],
        ),
        "agent: collector url with another scheme": (
            {"agent.yaml": "collector: {url: 'ftp://collector:9330'}\n"},
            (),
            "collector -> url",
            ["must start with http:// or https://", "ftp://"],
        ),
        "agent: interval below 1s": (
            agent("interval: 500ms\n"),
            (),
            "interval",
            ["must be at least 1s"],
        ),
        "agent: check interval below 1s": (
            agent("checks:\n  - {type: load, interval: 0.5s}\n"),
            (),
            "checks -> 1 -> interval",
            ["at least 1s"],
        ),
        "agent: missing collector section": (
            {"agent.yaml": "interval: 60s\nchecks:\n  - {type: load}\n"},
            (),
            "collector",
            ["required key is missing"],
        ),
        "agent: missing collector section, --kind agent": (
            {"agent.yaml": "interval: 60s\n"},
            ("--kind", "agent"),
            "collector",
            ["required key is missing"],
        ),
    }
)


@pytest.mark.parametrize(("files", "extra", "key_path", "words"), BAD_CONFIGS)
def test_validate_refuses_bad_config(
    tmp_path: Path,
    files: dict[str, str],
    extra: tuple[str, ...],
    key_path: str | None,
    words: list[str],
) -> None:
    result = validate(write(tmp_path, files), *extra)

    assert result.returncode == EXIT_USAGE, result.stderr
    assert "valid" not in result.stdout
    assert "runwatch: invalid config:" in result.stderr
    if key_path is not None:
        # A whole path, not a prefix of a longer one (`rules -> 1` must not match `rules -> 12`).
        assert f"{key_path}: " in result.stderr or f"{key_path} -> " in result.stderr
    for word in words:
        assert word in result.stderr
    assert "Traceback" not in result.stderr


RULE_FILE_MISTAKES = cases(
    {
        "unknown key in a rule file": (
            "rules:\n"
            + GOOD_RULE
            + "  - {name: disk_full, metric: fs_used_ratio, owner: ops, warn: 0.9}\n",
            "rules -> 2 -> warn",
            "unknown key",
        ),
        "unknown owner in a rule file": (
            "rules:\n"
            + GOOD_RULE
            + "  - {name: disk_full, metric: fs_used_ratio, owner: storage, warning: 0.9}\n",
            "rules -> 2 -> owner",
            "unknown group 'storage'",
        ),
        "bad duration in a rule file": (
            "rules:\n" + GOOD_RULE + "  - {name: swap_full, metric: swap_used_ratio, owner: ops, "
            "warning: 0.9, for: soon}\n",
            "rules -> 2 -> for",
            "expected a duration",
        ),
    }
)


@pytest.mark.parametrize(("rule_file", "key_path", "word"), RULE_FILE_MISTAKES)
def test_mistake_in_rule_file_names_that_file(
    tmp_path: Path, rule_file: str, key_path: str, word: str
) -> None:
    config = write(
        tmp_path, collector("rule_files: [rules/*.yaml]\n") | {"rules/storage.yaml": rule_file}
    )

    result = validate(config)

    assert result.returncode == EXIT_USAGE, result.stderr
    where = tmp_path.resolve() / "rules" / "storage.yaml"
    assert f"{where}: {key_path}: " in result.stderr
    assert word in result.stderr


def test_duplicate_rule_across_files_names_both(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        {
            "collector.yaml": COLLECTOR_BASE + "rule_files: [more/*.yaml]\nrules:\n" + GOOD_RULE,
            "more/extra.yaml": "rules:\n" + GOOD_RULE,
        },
    )

    result = validate(config)

    assert result.returncode == EXIT_USAGE, result.stderr
    assert f"{tmp_path.resolve() / 'more' / 'extra.yaml'}: rules -> 1 -> name: " in result.stderr
    assert f"already defined at {config}: rules -> 1" in result.stderr


@pytest.mark.parametrize(
    ("files", "key_path"),
    cases(
        {
            "collector: structural mistake": (
                rules(GOOD_RULE, "  - {name: x, metric: m, owner: ops, warning: high}\n"),
                "rules -> 2 -> warning",
            ),
            "collector: reference mistake": (
                collector("  dba: {sink: jira, assign: Databases}\n"),
                "groups -> dba -> sink",
            ),
            "agent: duplicate check": (
                agent("checks:\n  - {type: load}\n  - {type: load}\n"),
                "checks -> 2 -> name",
            ),
            "collector: bad listen address": (
                {"collector.yaml": COLLECTOR_BASE.replace('"127.0.0.1:9330"', "localhost")},
                "listen",
            ),
        }
    ),
)
def test_error_names_the_config_file(tmp_path: Path, files: dict[str, str], key_path: str) -> None:
    config = write(tmp_path, files)

    result = validate(config)

    assert result.returncode == EXIT_USAGE, result.stderr
    assert f"runwatch: invalid config: {config}: {key_path}: " in result.stderr


# -- every mistake at once -----------------------------------------------------------------------

MANY_MISTAKES = """\
listen: localhost
sinks:
  helpdesk: {type: builtin}
groups:
  ops: {sink: helpdesk, assign: Operations}
rules:
  - {name: load_high, metric: load5_per_core, owner: ops, warning: 2}
  - {name: disk_full, metric: fs_used_ratio, owner: ops, warn: 0.9}
  - {name: swap_full, metric: swap_used_ratio, owner: storage, warning: 0.9}
  - name: memory_full
    metric: memory_used_ratio
    owner: ops
    warning: 0.9
    for: soon
  - {name: inodes_full, metric: fs_inodes_used_ratio, owner: dba, warning: 0.9}
"""


def mistakes_said(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("runwatch: invalid config: ")]


def test_validate_reports_every_mistake_with_its_line(tmp_path: Path) -> None:
    """Structural mistakes, a bad listen address and references to unknown groups: all of them,
    each with its key path as the file numbers it and its line, in one run."""
    config = write(tmp_path, {"collector.yaml": MANY_MISTAKES})

    result = validate(config)

    assert result.returncode == EXIT_USAGE, result.stderr
    said = mistakes_said(result.stderr)
    expected = {
        "rules -> 2 -> warn: unknown key (line 8)",
        "rules -> 4 -> for: ",
        "listen: ",
        "rules -> 3 -> owner: unknown group 'storage'",
        # Rule 3 was left out to look further: rule 5 keeps its number.
        "rules -> 5 -> owner: unknown group 'dba'",
    }
    for words in expected:
        assert any(f"{config}: {words}" in line for line in said), (words, result.stderr)
    assert len(said) == len(expected), result.stderr
    lines = {line.split(": ")[3]: line.rsplit("(line ", 1)[-1] for line in said}
    assert lines == {
        "rules -> 2 -> warn": "8)",
        "rules -> 4 -> for": "14)",
        "listen": "1)",
        "rules -> 3 -> owner": "9)",
        "rules -> 5 -> owner": "15)",
    }
    numbers = [int(line.rsplit("(line ", 1)[1].rstrip(")")) for line in said]
    assert numbers == sorted(numbers), "as a person reads the file"
    assert f"runwatch: 5 mistakes in {config}" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_reports_every_mistaken_check(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        agent(
            "checks:\n"
            "  - {type: smart}\n"
            "  - {type: load}\n"
            "  - type: memory\n"
            "    interval: soon\n"
            "  - {type: load}\n"
        ),
    )

    result = validate(config)

    assert result.returncode == EXIT_USAGE, result.stderr
    said = mistakes_said(result.stderr)
    assert len(said) == 3, result.stderr
    assert f"{config}: checks -> 1 -> type: " in said[0]
    assert "known check types" in said[0] and said[0].endswith("(line 3)")
    assert f"{config}: checks -> 3 -> interval: " in said[1] and said[1].endswith("(line 6)")
    # The second load check repeats the first, which was not left out: it is named too.
    assert f"{config}: checks -> 4 -> name: " in said[2] and said[2].endswith("(line 7)")


def test_a_mistake_that_hides_the_rest_ends_the_list(tmp_path: Path) -> None:
    """A group whose sink is unknown: what rests on it is not guessed at, only it is named."""
    config = write(tmp_path, collector("  dba: {sink: jira, assign: Databases}\n"))

    result = validate(config)

    assert result.returncode == EXIT_USAGE
    (said,) = mistakes_said(result.stderr)
    assert said.endswith("groups -> dba -> sink: unknown sink 'jira' (sinks: helpdesk) (line 6)")


def test_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "collector.yaml"
    config.write_bytes(b"groups:\n  ops: {sink: helpdesk, assign: Op\xe9rations}\n")

    result = validate(config)

    assert result.returncode == EXIT_USAGE
    assert f"{config}: " in result.stderr
    assert "UTF-8" in result.stderr
    assert "Traceback" not in result.stderr


SHIPPED_RULE_COUNT = sum(
    len(yaml.safe_load(path.read_text())["rules"])
    for path in (REPO / "config" / "rules").glob("*.yaml")
)


@pytest.mark.parametrize(
    ("name", "summary"),
    cases(
        {
            "shipped collector config": (
                "collector.yaml",
                f"collector config: 2 groups, {SHIPPED_RULE_COUNT} rules, 1 sink(s)",
            ),
            "shipped agent config": ("agent.yaml", "8 checks"),
        }
    ),
)
def test_shipped_configs_validate(name: str, summary: str) -> None:
    result = validate(REPO / "config" / name)

    assert result.returncode == EXIT_OK, result.stderr
    assert "valid" in result.stdout
    assert summary in result.stdout


def test_missing_file_cannot_be_read(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"

    result = validate(missing)

    assert result.returncode == EXIT_USAGE
    assert f"{missing}: cannot read the file" in result.stderr


# -- the library entry points --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "key_path"),
    cases(
        {
            "wrong type": (
                rules(GOOD_RULE, "  - {name: x, metric: m, owner: ops, warning: high}\n"),
                "rules -> 2 -> warning",
            ),
            "missing owner": (
                rules(GOOD_RULE, "  - {name: x, metric: m, warning: 1}\n"),
                "rules -> 2 -> owner",
            ),
            "unknown sink": (
                collector("  dba: {sink: jira, assign: Databases}\n"),
                "groups -> dba -> sink",
            ),
            "unknown top-level key": (collector("retention: 30d\n"), "retention"),
        }
    ),
)
def test_load_collector_config_raises_with_path(
    tmp_path: Path, files: dict[str, str], key_path: str
) -> None:
    config = write(tmp_path, files)

    with pytest.raises(ConfigError) as caught:
        load_collector_config(config)

    assert caught.value.path == key_path
    assert caught.value.source == str(config)


def test_load_collector_config_names_the_rule_file(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        collector("rule_files: [rules/*.yaml]\n")
        | {"rules/storage.yaml": "rules:\n  - {name: x, metric: m, owner: storage, warning: 1}\n"},
    )

    with pytest.raises(ConfigError) as caught:
        load_collector_config(config)

    assert caught.value.path == "rules -> 1 -> owner"
    assert caught.value.source == str(tmp_path.resolve() / "rules" / "storage.yaml")


def test_collector_config_from_dict_raises_with_path() -> None:
    rule = {"name": "a", "metric": "m", "owner": "ops", "warning": 1}
    data = {
        "sinks": {"helpdesk": {"type": "builtin"}},
        "groups": {"ops": {"sink": "helpdesk", "assign": "Operations"}},
        "rules": [rule, rule],
    }

    with pytest.raises(ConfigError) as caught:
        collector_config_from_dict(data)

    assert caught.value.path == "rules -> 2 -> name"
    assert not caught.value.source


def test_load_agent_config_raises_with_path(tmp_path: Path) -> None:
    config = write(tmp_path, agent("checks:\n  - {type: load}\n  - {type: smart}\n"))

    with pytest.raises(ConfigError) as caught:
        load_agent_config(config)

    assert caught.value.path == "checks -> 2 -> type"
    assert caught.value.source == str(config)


def test_agent_interval_error_has_path() -> None:
    with pytest.raises(ConfigError) as caught:
        agent_config_from_dict({"collector": {"url": "http://127.0.0.1:9"}, "interval": "0.5s"})

    assert caught.value.path == "interval"


def test_sink_secret_and_ca_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    from collector.config import load_collector_config

    config = tmp_path / "etc" / "collector.yaml"
    config.parent.mkdir()
    config.write_text(
        "sinks:\n"
        "  desk: {type: rt, url: 'https://rt.example', queue: Ops,\n"
        "         token: {file: secrets/rt.token}, ca_file: ca.pem}\n"
    )
    loaded = load_collector_config(config)
    sink = loaded.sinks["desk"]
    assert sink.token.file == str(tmp_path / "etc" / "secrets" / "rt.token")
    assert sink.ca_file == str(tmp_path / "etc" / "ca.pem")
