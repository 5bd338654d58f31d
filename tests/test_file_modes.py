"""What the collector and the agent keep on disk is for their user only, whatever the umask.

Each process runs with umask 022, the usual default, under which a plain mkdir makes 0755 and
SQLite makes its store 0644: readable by every local user.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import yaml

from agent.spool import Spool
from tests.helpers import FS_RULE, GROUPS, RUNWATCH, write_collector_yaml
from tests.procs import Processes, get_json, read_url, wait_for

UMASK = 0o022
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
UNDER_UMASK: dict[str, Any] = {"env": ENV, "umask": UMASK}  # for processes.start


def open_to_others(top: Path) -> list[str]:
    """Every directory and file under `top` (itself included) its group or others may use."""
    found = []
    for path in [top, *top.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077 and not path.is_symlink():
            found.append(f"{path.relative_to(top.parent)} {mode:04o}")
    return found


def test_runwatch_up_keeps_its_data_dir_private(tmp_path: Path, processes: Processes) -> None:
    data = tmp_path / "data"
    args = (RUNWATCH, "up", "--listen", "127.0.0.1:0", "--data-dir", str(data), "--interval", "1s")
    with (tmp_path / "up.log").open("w") as log:
        up = processes.start(*args, stdout=subprocess.PIPE, stderr=log, env=ENV, umask=UMASK)
        url = read_url(up, "stdout")
        wait_for(
            "a report from the local agent",
            lambda: [h for h in get_json(f"{url}/api/v1/hosts") if h["measurements"]],
        )
        wait_for("the console secret", (data / "console.secret").exists, timeout=5)
        for name in (
            "runwatch.db",
            "runwatch.db-wal",
            "runwatch.db-shm",
            "agents.tokens",
            "agent.token",
            "agent/spool/state.json",
        ):
            assert (data / name).exists(), name
        assert open_to_others(data) == []
        processes.stop(up)

    # One made by an older version, or by hand: each gets one warning with its chmod.
    data.chmod(0o755)
    (data / "runwatch.db").chmod(0o644)
    (data / "agent").chmod(0o755)
    with (tmp_path / "again.log").open("w") as log:
        again = processes.start(*args, stdout=subprocess.PIPE, stderr=log, env=ENV, umask=UMASK)
        read_url(again, "stdout")
        processes.stop(again)
    text = (tmp_path / "again.log").read_text()
    for path, mode, wanted in (
        (data, "0755", 700),
        (data / "runwatch.db", "0644", 600),
        (data / "agent", "0755", 700),
    ):
        assert (
            f"{path} is open to other users (mode {mode}); restrict it with: "
            f"chmod {wanted} {path}" in text
        ), text
    assert text.count("is open to other users") == 3, text


def test_runwatch_collector_keeps_its_data_dir_private(
    tmp_path: Path, processes: Processes
) -> None:
    data = tmp_path / "var" / "runwatch"
    config = write_collector_yaml(tmp_path / "collector.yaml", data, GROUPS, rules=[FS_RULE])
    with (tmp_path / "collector.log").open("w+") as log:
        collector = processes.runwatch(
            "collector", config, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **UNDER_UMASK
        )
        url = read_url(collector)
        get_json(f"{url}/api/v1/hosts")
        assert (data / "runwatch.db-wal").exists()
        assert open_to_others(data) == []
        processes.stop(collector)
        del log


def test_the_agent_keeps_its_state_dir_private(tmp_path: Path, processes: Processes) -> None:
    state = tmp_path / "agent-state"
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "collector": {"url": "http://127.0.0.1:9"},  # nobody there: reports stay spooled
                "interval": "1s",
                "state_dir": str(state),
                "checks": [{"type": "uptime"}],
            }
        )
    )
    agent = processes.runwatch(
        "agent", config, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **UNDER_UMASK
    )
    wait_for("a spooled report", lambda: list((state / "spool").glob("*.report")))
    processes.stop(agent)
    assert open_to_others(state) == []


def test_a_rejected_report_stays_private(tmp_path: Path) -> None:
    old = os.umask(UMASK)
    try:
        spool = Spool(tmp_path / "spool", 1 << 20, 100)
        seq = spool.next_seq()
        spool.put(seq, b"{}")
        spool.reject(seq, "422: refused")
        spool.close()
    finally:
        os.umask(old)
    assert (tmp_path / "spool" / "rejected").is_dir()
    assert open_to_others(tmp_path / "spool") == []
