"""The `runwatch` command as an admin runs it: help, version, exit codes, check and tokens."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import runwatch
from runwatch import units
from tests.helpers import FS_RULE, GROUPS, write_collector_yaml
from tests.helpers.tools import job_run_args
from tests.procs import Processes, read_url

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# Nothing listens on port 1 here: a connection is refused at once.
UNREACHABLE = "http://127.0.0.1:1"


def runwatch_argv() -> list[str]:
    """Return the command that runs the installed `runwatch` script, or the module if absent."""
    script = Path(sys.executable).with_name("runwatch")
    return [str(script)] if script.exists() else [sys.executable, "-m", "runwatch.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `runwatch ARGS...` and capture what it says."""
    return subprocess.run(
        [*runwatch_argv(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


# -- help, version, usage errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        pytest.param([], id="runwatch"),
        pytest.param(["up"], id="up"),
        pytest.param(["collector"], id="collector"),
        pytest.param(["collector", "token"], id="collector token"),
        pytest.param(["collector", "token", "add"], id="collector token add"),
        pytest.param(["collector", "token", "list"], id="collector token list"),
        pytest.param(["collector", "token", "revoke"], id="collector token revoke"),
        pytest.param(["token"], id="token"),
        pytest.param(["token", "add"], id="token add"),
        pytest.param(["token", "list"], id="token list"),
        pytest.param(["token", "revoke"], id="token revoke"),
        pytest.param(["agent"], id="agent"),
        pytest.param(["check"], id="check"),
        pytest.param(["calls"], id="calls"),
        pytest.param(["status"], id="status"),
        pytest.param(["config"], id="config"),
        pytest.param(["config", "validate"], id="config validate"),
        pytest.param(["job"], id="job"),
        pytest.param(["job", "run"], id="job run"),
    ],
)
def test_help(command: list[str]) -> None:
    result = run(*command, "--help")

    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout.startswith("usage: runwatch")
    assert " ".join(["runwatch", *command]) in result.stdout.splitlines()[0]
    assert result.stderr == ""


def test_version() -> None:
    result = run("--version")

    assert result.returncode == EXIT_OK
    assert result.stdout.strip() == f"runwatch {runwatch.__version__}"


@pytest.mark.parametrize(
    ("command", "word"),
    [
        pytest.param(["frobnicate"], "invalid choice: 'frobnicate'", id="unknown command"),
        pytest.param([], "required: COMMAND", id="no command"),
        pytest.param(["config"], "required: ACTION", id="config without an action"),
        pytest.param(["token", "add"], "required: host", id="token add without a host"),
        pytest.param(["calls", "--limit", "many"], "invalid int value", id="bad --limit"),
    ],
)
def test_bad_command_line(command: list[str], word: str) -> None:
    result = run(*command)

    assert result.returncode == EXIT_USAGE
    assert "usage: runwatch" in result.stderr
    assert word in result.stderr


# -- calls and status without a collector --------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["calls"], id="calls"),
        pytest.param(["calls", "--open", "--json"], id="calls --open --json"),
        pytest.param(["status"], id="status"),
        pytest.param(["status", "--json"], id="status --json"),
    ],
)
def test_unreachable_collector(command: list[str]) -> None:
    result = run(*command, "--collector", UNREACHABLE)

    assert result.returncode == EXIT_FAILED
    assert f"cannot reach the collector at {UNREACHABLE}" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_collector_url_from_environment() -> None:
    env = os.environ | {"RUNWATCH_COLLECTOR": UNREACHABLE}

    result = run("status", env=env)

    assert result.returncode == EXIT_FAILED
    assert f"cannot reach the collector at {UNREACHABLE}" in result.stderr


def test_collector_url_without_scheme() -> None:
    result = run("calls", "--collector", "127.0.0.1:1")

    assert result.returncode == EXIT_FAILED
    assert "must be an http:// or https:// URL" in result.stderr


# -- a reader that leaves: `runwatch status | head` ---------------------------------------------

# The status of a command that SIGPIPE ended, as `head` and the shell expect it.
EXIT_PIPE_CLOSED = 141


def run_into_closed_pipe(tmp_path: Path, *args: str) -> tuple[int, str]:
    """Run `runwatch ARGS...` with a stdout whose reader has already gone; its status, stderr."""
    with (tmp_path / "stderr").open("w+", encoding="utf-8") as stderr:
        process = subprocess.Popen([*runwatch_argv(), *args], stdout=subprocess.PIPE, stderr=stderr)
        # Closed long before the command has imported what it needs and writes its first line.
        assert process.stdout is not None
        process.stdout.close()
        code = process.wait(timeout=60)
        stderr.seek(0)
        return code, stderr.read()


@pytest.mark.parametrize("command", [["--help"], ["check", "--help"]], ids=" ".join)
def test_help_into_a_closed_stdout_is_quiet(tmp_path: Path, command: list[str]) -> None:
    # argparse drops a failed write of its help (OSError) and exits 0: quiet is what counts.
    code, stderr = run_into_closed_pipe(tmp_path, *command)

    assert (code, stderr) in ((EXIT_OK, ""), (EXIT_PIPE_CLOSED, ""))


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["check", "--config", "AGENT"], id="check"),
        pytest.param(["check", "--config", "AGENT", "--json"], id="check --json"),
        pytest.param(["token", "list", "--tokens-file", "TOKENS"], id="token list"),
    ],
)
def test_a_closed_stdout_ends_the_command_quietly(
    tmp_path: Path, agent_config: Path, command: list[str]
) -> None:
    tokens = tmp_path / "agents.tokens"
    assert run("token", "add", "web01", "--tokens-file", str(tokens)).returncode == EXIT_OK
    files = {"AGENT": str(agent_config), "TOKENS": str(tokens)}

    code, stderr = run_into_closed_pipe(tmp_path, *[files.get(word, word) for word in command])

    assert (code, stderr) == (EXIT_PIPE_CLOSED, "")


def test_status_into_head_is_quiet(tmp_path: Path, processes: Processes) -> None:
    """`runwatch status | head` and `runwatch calls | head` against a real collector."""
    config = write_collector_yaml(
        tmp_path / "collector.yaml", tmp_path / "data", GROUPS, rules=[FS_RULE]
    )
    collector = processes.runwatch(
        "collector", config, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = read_url(collector)

    for command in (["status"], ["status", "--json"], ["calls"]):
        code, stderr = run_into_closed_pipe(tmp_path, *command, "--collector", url)
        assert (code, stderr) == (EXIT_PIPE_CLOSED, ""), command
    # A pipe that closes is the reader's business; an unreachable collector still speaks.
    code, stderr = run_into_closed_pipe(tmp_path, "status", "--collector", UNREACHABLE)
    assert code == EXIT_FAILED and "cannot reach the collector" in stderr


# -- check -------------------------------------------------------------------------------------

AGENT_CONFIG = """\
collector: {url: "http://127.0.0.1:9"}   # never contacted by `runwatch check`
host: web01
checks:
  - {type: load}
  - {type: memory}
  - {type: uptime}
"""


@pytest.fixture
def agent_config(tmp_path: Path) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(AGENT_CONFIG, encoding="utf-8")
    return path


def test_check_json(agent_config: Path) -> None:
    result = run("check", "--config", str(agent_config), "--json")

    assert result.returncode == EXIT_OK, result.stderr
    out = json.loads(result.stdout)
    assert out["host"] == "web01"
    measurements = out["measurements"]
    for m in measurements:
        assert {"check", "name", "value", "unit", "labels"} <= m.keys(), m
        assert isinstance(m["value"], float | int)
    by_name = {m["name"]: m for m in measurements}
    assert {"load1", "memory_total_bytes", "uptime_seconds"} <= by_name.keys()
    assert by_name["load1"]["check"] == "load"
    assert by_name["memory_total_bytes"]["unit"] == "bytes"
    assert by_name["memory_total_bytes"]["value"] > 0
    assert {r["check"] for r in out["checks"]} == {"load", "memory", "uptime"}
    assert all(r["error"] is None for r in out["checks"])


def test_check_text(agent_config: Path) -> None:
    result = run("check", "--config", str(agent_config))

    assert result.returncode == EXIT_OK, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:2] == ["memory", "memory_total_bytes"] for line in lines)
    assert any(line.split()[:2] == ["load", "load1"] for line in lines)


def test_check_text_reads_values_in_human_units(agent_config: Path) -> None:
    """Bytes with binary prefixes and durations as people write them, never `2.5276e+10`."""
    result = run("check", "--config", str(agent_config), "--json")
    measured = {m["name"]: m for m in json.loads(result.stdout)["measurements"]}

    result = run("check", "--config", str(agent_config))

    assert result.returncode == EXIT_OK, result.stderr
    assert "e+" not in result.stdout
    shown = {line.split()[1]: line.split(None, 2)[2] for line in result.stdout.splitlines()}
    total = measured["memory_total_bytes"]
    assert shown["memory_total_bytes"] == units.size(total["value"])
    assert shown["memory_total_bytes"].endswith(("MiB", "GiB", "TiB"))
    # Uptime and load move between the two runs; their form is what must hold.
    assert re.fullmatch(r"[\d.]+ (y|d|h|min|s)( \d+ (d|h|min|s))?", shown["uptime_seconds"])
    assert re.fullmatch(r"\d+(\.\d+)?", shown["load1"])


def test_check_that_cannot_measure_fails(agent_config: Path) -> None:
    # The memory and uptime checks read /proc through psutil; point psutil at a /proc that is
    # not there, as on a host where the agent lacks read access, and both checks fail.
    script = (
        "import sys, psutil; psutil.PROCFS_PATH = '/nonexistent/proc'; "
        "from runwatch.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "check", "--config", str(agent_config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == EXIT_FAILED
    assert "memory       ERROR: cannot read memory figures" in result.stderr
    assert "needs read access to /proc/meminfo" in result.stderr
    assert "load1" in result.stdout  # the load check does not read /proc: it still reports


def test_check_with_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(AGENT_CONFIG + "  - {type: smart}\n", encoding="utf-8")

    result = run("check", "--config", str(config))

    assert result.returncode == EXIT_USAGE
    assert "checks -> 4 -> type" in result.stderr


# -- tokens ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param(["token"], id="token"),
        pytest.param(["collector", "token"], id="collector token"),
    ],
)
def test_token_lifecycle(tmp_path: Path, prefix: list[str]) -> None:
    tokens = tmp_path / "agents.tokens"
    where = ["--tokens-file", str(tokens)]

    added = run(*prefix, "add", "web01", *where)

    assert added.returncode == EXIT_OK, added.stderr
    token = added.stdout.strip()
    assert token.startswith("rwt_")
    assert len(token) > 40
    assert "shown only once" in added.stderr
    text = tokens.read_text(encoding="utf-8")
    assert token not in text
    assert token not in added.stderr
    entries = [line.split() for line in text.splitlines() if not line.startswith("#")]
    assert len(entries) == 1
    assert entries[0][0] == "web01"
    assert entries[0][1].startswith("sha256:")
    assert tokens.stat().st_mode & 0o777 == 0o600

    listed = run(*prefix, "list", *where, "--json")

    assert listed.returncode == EXIT_OK, listed.stderr
    assert [entry["host"] for entry in json.loads(listed.stdout)] == ["web01"]

    again = run(*prefix, "add", "web01", *where)

    assert again.returncode == EXIT_FAILED
    assert "web01 already has a token" in again.stderr
    assert "--replace" in again.stderr
    assert tokens.read_text(encoding="utf-8") == text

    revoked = run(*prefix, "revoke", "web01", *where)

    assert revoked.returncode == EXIT_OK, revoked.stderr
    assert "web01" not in tokens.read_text(encoding="utf-8")
    assert json.loads(run(*prefix, "list", *where, "--json").stdout) == []

    revoked_again = run(*prefix, "revoke", "web01", *where)

    assert revoked_again.returncode == EXIT_FAILED
    assert "web01 has no token" in revoked_again.stderr


def test_token_replace(tmp_path: Path) -> None:
    where = ["--tokens-file", str(tmp_path / "agents.tokens")]
    first = run("token", "add", "web01", *where).stdout.strip()

    second = run("token", "add", "web01", "--replace", *where)

    assert second.returncode == EXIT_OK, second.stderr
    assert second.stdout.strip().startswith("rwt_")
    assert second.stdout.strip() != first
    listed = json.loads(run("token", "list", *where, "--json").stdout)
    assert [entry["host"] for entry in listed] == ["web01"]


def test_token_list_text(tmp_path: Path) -> None:
    where = ["--tokens-file", str(tmp_path / "agents.tokens")]
    for host in ("web01", "db01"):
        assert run("token", "add", host, *where).returncode == EXIT_OK

    listed = run("token", "list", *where)

    assert listed.returncode == EXIT_OK, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert header.split() == ["HOST", "CREATED"]
    assert [line.split()[0] for line in lines] == ["web01", "db01"]


def test_token_file_from_collector_config(tmp_path: Path) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text(
        "data_dir: data\nagents: {tokens_file: secrets/agents.tokens}\n", encoding="utf-8"
    )

    added = run("token", "add", "web01", "--config", str(config))

    assert added.returncode == EXIT_OK, added.stderr
    assert "web01 sha256:" in (tmp_path / "secrets" / "agents.tokens").read_text(encoding="utf-8")


def test_corrupt_tokens_file_is_reported(tmp_path: Path) -> None:
    tokens = tmp_path / "agents.tokens"
    tokens.write_text("web01 not-a-hash\n", encoding="utf-8")

    result = run("token", "list", "--tokens-file", str(tokens))

    assert result.returncode == EXIT_FAILED
    assert f"{tokens}:1: expected 'HOST sha256:HEX [CREATED_AT [ROLE]]'" in result.stderr


def test_token_add_refuses_host_name_with_space(tmp_path: Path) -> None:
    tokens = tmp_path / "agents.tokens"

    added = run("token", "add", "web 01", "--tokens-file", str(tokens))

    assert added.returncode != EXIT_OK
    assert run("token", "list", "--tokens-file", str(tokens)).returncode == EXIT_OK


@pytest.mark.parametrize(
    ("script", "tool", "status"),
    [
        pytest.param("exit 0", "restic", 0, id="success"),
        pytest.param("exit 3", "restic", 1, id="restic exit 3: files unreadable, a warning"),
        pytest.param("exit 12", "restic", 2, id="restic exit 12: wrong password, an error"),
        pytest.param("exit 1", "borg", 1, id="borg exit 1: a warning"),
    ],
)
def test_job_run_passes_the_exit_code_through_and_records_it(
    tmp_path: Path, script: str, tool: str, status: int
) -> None:
    from checks.statusfile import StatusfileCheck, StatusfileOptions

    status_file = tmp_path / "jobs" / "nightly.json"
    result = run(*job_run_args(status_file, tool, "sh", "-c", script))
    assert result.returncode == int(script.split()[1])
    recorded = json.loads(status_file.read_text())
    assert (recorded["job"], recorded["tool"]) == ("nightly", tool)
    values = {
        m.name: m.value for m in StatusfileCheck(StatusfileOptions(path=str(status_file))).collect()
    }
    assert values["backup_last_status"] == status
    assert ("backup_last_success_timestamp_seconds" in values) == (status == 0)


def test_job_run_without_a_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run("job", "run", "nightly", "--status-file", str(tmp_path / "s.json"))
    assert result.returncode == 1
    assert "no command given" in result.stderr
    assert run("status", "--", "x").returncode == 2
