"""The CLI's lists as people and scripts read them: aligned tables with states in colour on a
terminal (run under a pseudo-terminal here), plain and stable text when piped, --json on every
list, values in human units, a quiet end when the reader leaves, and `status --watch`."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from checks.schema import encode
from collector.auth import add_token
from runwatch.cli import parse
from runwatch.cli.output import Column, table_text
from tests.helpers import FS_RULE, GROUPS, FakeClock, Reporter, write_collector_yaml
from tests.helpers.tools import RUNWATCH, runwatch
from tests.procs import Processes, post_report, read_url

FAST_FS = {**FS_RULE, "for": "0s"}
ESCAPE = "\x1b["
EXIT_PIPE_CLOSED = 141


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A collector that heard from web01 (CRITICAL at 97 %), db01 (WARNING) and web02 (OK),
    with an operator token for reads of the audit log."""
    base = tmp_path_factory.mktemp("fleet")
    config = write_collector_yaml(base / "collector.yaml", base / "data", GROUPS, rules=[FAST_FS])
    agents = {n: add_token(base / "data" / "agents.tokens", n) for n in ("web01", "db01", "web02")}
    operator = base / "operator.token"
    operator.write_text(add_token(base / "data" / "operators.tokens", "ops-alice"))
    processes = Processes()
    try:
        url = read_url(processes.runwatch("collector", config, stderr=subprocess.PIPE))
        env = {"RUNWATCH_OPERATOR_TOKEN_FILE": str(operator)}
        silence = runwatch(
            "silence", "add", "--host", "db01", "--rule", "filesystem_full", "--for", "2h",
            "--reason", "disk swap", "--collector", url, env=env,
        )  # fmt: skip
        assert silence.returncode == 0, silence.stderr
        clock = FakeClock(time.time())
        for name, value in (("web01", 0.97), ("db01", 0.9), ("web02", 0.5)):
            report = msgspec.structs.replace(
                Reporter(name, clock).report({"fs_used_ratio": value}), labels={"role": "web"}
            )
            assert post_report(url, agents[name], encode(report)) == 202
        yield {"url": url, "env": env}
    finally:
        processes.stop_all()


def in_terminal(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> str:
    """Run `runwatch ARGS...` with a pseudo-terminal as stdout; what it wrote there."""
    master, slave = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    environment.update({"TERM": "xterm-256color", "COLUMNS": "200", **(env or {})})
    process = subprocess.Popen(
        [RUNWATCH, *args], stdout=slave, stderr=subprocess.PIPE, env=environment
    )
    os.close(slave)
    out = read_all(master, process, timeout)
    assert process.wait(timeout=timeout) == 0
    return out


def read_all(master: int, process: subprocess.Popen[bytes], timeout: float) -> str:
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed its end
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
    finally:
        os.close(master)
    return b"".join(chunks).decode()


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


# -- the plain table ---------------------------------------------------------------------------


def test_a_plain_table_aligns_its_columns_and_cuts_nothing() -> None:
    rows = [
        {"host": "web01", "state": "CRITICAL", "calls": 12, "note": "a long note, kept whole " * 4},
        {"host": "a-much-longer-host-name.example", "state": "OK", "calls": 3, "note": "x\ny"},
    ]
    columns = [
        Column("host", lambda r: r["host"]),
        Column("state", lambda r: r["state"], coloured=True),
        Column("calls", lambda r: str(r["calls"]), right=True),
        Column("note", lambda r: r["note"]),
    ]

    lines = table_text(rows, columns).splitlines()

    assert lines[0] == "HOST                             STATE     CALLS  NOTE"
    assert lines[1].startswith("web01                            CRITICAL     12  a long note")
    assert lines[1].endswith("kept whole"), "the last column is neither cut nor padded"
    assert lines[2] == "a-much-longer-host-name.example  OK            3  x y"
    assert {line.index("STATE") if i == 0 else 33 for i, line in enumerate(lines)} == {33}


# -- piped: plain and stable -------------------------------------------------------------------


def test_piped_lists_are_plain_aligned_text(fleet: dict[str, Any]) -> None:
    listed = runwatch("host", "list", "--collector", fleet["url"])
    assert listed.returncode == 0, listed.stderr
    assert ESCAPE not in listed.stdout
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["HOST", "STATE", "LAST", "REPORT", "AGENT", "LABELS"]
    state_at = lines[0].index("STATE")
    states = {line.split()[0]: line[state_at:].split()[0] for line in lines[1:]}
    assert states == {"db01": "WARNING", "web01": "CRITICAL", "web02": "OK"}
    assert [line.split()[0] for line in lines[1:]] == ["db01", "web01", "web02"]
    for line in lines[1:]:
        assert re.match(r"\S+\s+\S+\s+(just now|[\d.]+ s ago)\s+test\s+role=web$", line), line


def test_status_reads_values_in_their_units(fleet: dict[str, Any]) -> None:
    status = runwatch("status", "--collector", fleet["url"])
    assert status.returncode == 0, status.stderr
    assert ESCAPE not in status.stdout
    assert status.stdout.startswith("3 host(s): 1 CRITICAL, 1 WARNING, 1 OK\n")
    web01 = next(
        line for line in status.stdout.splitlines() if "filesystem_full" in line and "web01" in line
    )
    assert re.match(
        r"web01\s+filesystem_full\s+mountpoint=/\s+CRITICAL\s+97\.0%\s+the first report\s+#\d+$",
        web01,
    )
    db01 = next(
        line for line in status.stdout.splitlines() if "filesystem_full" in line and "db01" in line
    )
    assert re.search(r"WARNING\s+90\.0%\s+the first report\s+-\s+silenced$", db01), db01
    assert "0.97" not in status.stdout
    assert status.stdout.rstrip().endswith("1 open call(s)")


def test_rules_list_reads_thresholds_in_their_units(fleet: dict[str, Any]) -> None:
    listed = runwatch("rules", "list", "--collector", fleet["url"])
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == [
        "RULE",
        "METRIC",
        "OWNER",
        "WARNING",
        "CRITICAL",
        "FOR",
        "PROBLEMS",
        "NOW",
    ]
    assert re.fullmatch(
        r"filesystem_full\s+fs_used_ratio\s+systems-administration\s+>= 85\.0%\s+>= 95\.0%"
        r"\s+0 s\s+1 CRITICAL, 1 WARNING",
        row,
    ), row


def test_rules_explain_reads_thresholds_in_their_units(fleet: dict[str, Any]) -> None:
    explained = runwatch(
        "rules", "explain", "web01", "filesystem_full", "--collector", fleet["url"]
    )
    assert explained.returncode == 0, explained.stderr
    assert "warning 85.0%, critical 95.0%, clear 80.0%, for 0 s" in explained.stdout
    assert "now: mountpoint=/ CRITICAL at 97.0%" in explained.stdout


# -- on a terminal: colour ---------------------------------------------------------------------


def test_on_a_terminal_states_are_in_colour(fleet: dict[str, Any]) -> None:
    out = in_terminal("host", "list", "--collector", fleet["url"])
    assert ESCAPE in out
    assert re.search(r"\x1b\[[0-9;]*31m(\x1b\[[0-9;]*m)*CRITICAL", out), repr(out)  # red
    assert re.search(r"\x1b\[[0-9;]*33m(\x1b\[[0-9;]*m)*WARNING", out), repr(out)  # yellow
    text = plain(out)
    assert re.search(r"web01\s+CRITICAL", text) and re.search(r"web02\s+OK", text)


def test_no_color_keeps_a_terminal_plain(fleet: dict[str, Any]) -> None:
    out = in_terminal("status", "--collector", fleet["url"], env={"NO_COLOR": "1"})
    assert ESCAPE not in out and "97.0%" in out


# -- --json on every list ------------------------------------------------------------------------

LISTS = [
    ["host", "list"],
    ["calls"],
    ["calls", "--dead"],
    ["silence", "list"],
    ["outbox", "list"],
    ["audit"],
    ["status"],
    ["rules", "explain", "web01", "filesystem_full"],
    ["rules", "list"],
]


@pytest.mark.parametrize("command", LISTS, ids=" ".join)
def test_every_list_prints_json(fleet: dict[str, Any], command: list[str]) -> None:
    result = runwatch(*command, "--json", "--collector", fleet["url"], env=fleet["env"])
    assert result.returncode == 0, result.stderr
    json.loads(result.stdout)


@pytest.mark.parametrize(
    "command",
    [
        ["token", "list"],
        ["token", "list", "--operator"],
        ["user", "list"],
        ["check"],
        ["deploy", "status", "--inventory", "i.yaml"],
        ["outbox", "check-sinks"],
    ],
    ids=" ".join,
)
def test_local_lists_take_json_too(command: list[str]) -> None:
    assert parse([*command, "--json"]).json is True


def test_token_and_user_lists_as_tables_and_json(tmp_path: Path) -> None:
    tokens = ["--tokens-file", str(tmp_path / "operators.tokens")]
    for name in ("alice", "bob"):
        assert runwatch("token", "add", name, "--operator", *tokens).returncode == 0
    listed = runwatch("token", "list", "--operator", *tokens)
    assert listed.stdout.splitlines()[0].split() == ["OPERATOR", "CREATED", "ROLE"]
    assert re.match(r"alice\s+(just now|[\d.]+ s ago)\s+operator$", listed.stdout.splitlines()[1])
    as_json = json.loads(runwatch("token", "list", "--operator", *tokens, "--json").stdout)
    assert [(e["host"], e["role"]) for e in as_json] == [("alice", "operator"), ("bob", "operator")]


# -- a reader that leaves ------------------------------------------------------------------------


def test_host_list_into_head_is_quiet(fleet: dict[str, Any]) -> None:
    shell = subprocess.run(
        f"{RUNWATCH} host list --collector {fleet['url']} | head -1",
        shell=True,  # our own command line, to test a real `| head -1`
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shell.stdout.split() == ["HOST", "STATE", "LAST", "REPORT", "AGENT", "LABELS"]
    assert shell.stderr == ""
    for command in (
        ["host", "list"],
        ["status"],
        ["status", "--watch"],
        ["silence", "list"],
        ["audit"],
        ["calls"],
    ):
        process = subprocess.Popen(
            [RUNWATCH, *command, "--collector", fleet["url"]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **fleet["env"]},
        )
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # the reader left before the first line
        code = process.wait(timeout=60)
        assert (code, process.stderr.read()) == (EXIT_PIPE_CLOSED, b""), command


# -- status --watch ------------------------------------------------------------------------------


def test_status_watch_redraws_in_place_until_ctrl_c(fleet: dict[str, Any]) -> None:
    master, slave = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    process = subprocess.Popen(
        [RUNWATCH, "status", "--watch", "--every", "1s", "--collector", fleet["url"]],
        stdout=slave,
        stderr=subprocess.PIPE,
        env={**environment, "TERM": "xterm", "COLUMNS": "200"},
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while seen.count(b"Ctrl-C to stop") < 2 and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                seen += os.read(master, 65536)
        assert seen.count(b"Ctrl-C to stop") >= 2, "a second picture within 30 s"
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        try:
            while select.select([master], [], [], 0.2)[0]:
                seen += os.read(master, 65536)
        except OSError:
            pass
        os.close(master)
    assert code in (0, 130)
    assert process.stderr is not None
    errors = process.stderr.read().decode()
    assert "Traceback" not in errors and errors == ""
    text = seen.decode()
    assert text.count("\x1b[H") >= 2, "each picture is drawn from the top, in place"
    assert "97.0%" in plain(text)
    assert text.endswith("\x1b[?25h\r\n") or "\x1b[?25h" in text, "the cursor comes back"


def test_status_watch_piped_prints_one_picture_after_another(fleet: dict[str, Any]) -> None:
    process = subprocess.Popen(
        [RUNWATCH, "status", "--watch", "--every", "1s", "--collector", fleet["url"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 30
        while sum("Ctrl-C to stop" in line for line in lines) < 2 and time.monotonic() < deadline:
            lines.append(process.stdout.readline())
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert sum("Ctrl-C to stop" in line for line in lines) == 2
    assert code in (0, 130) and process.stderr.read() == ""
    assert ESCAPE not in "".join(lines)


def test_status_watch_fits_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    from runwatch.cli.status import _fit

    lines = [f"line {i}" for i in range(30)]
    monkeypatch.setenv("LINES", "10")
    fitted = _fit(lines)
    assert fitted[:8] == lines[:8] and len(fitted) == 9
    assert fitted[-1].startswith("... 22 more line(s)")
    monkeypatch.setenv("LINES", "40")
    assert _fit(lines) == lines


def test_status_watch_and_json_are_not_together() -> None:
    result = runwatch("status", "--watch", "--json", "--collector", "http://127.0.0.1:1")
    assert result.returncode == 2 and "give one" in result.stderr
