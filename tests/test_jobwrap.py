"""The job wrapper runs real commands and leaves a status file the statusfile check reads."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.jobwrap import run_job
from checks.schema import Measurement
from checks.statusfile import StatusfileCheck, StatusfileOptions


def ticking(*times: float) -> Callable[[], float]:
    """A clock that returns the given times in order (start, end of each run)."""
    values = iter(times)
    return lambda: next(values)


def measure(status_file: Path, now: float) -> dict[str, Measurement]:
    out = StatusfileCheck(StatusfileOptions(path=str(status_file)), clock=lambda: now).collect()
    return {m.name: m for m in out}


def read(status_file: Path) -> dict[str, object]:
    data = json.loads(status_file.read_text())
    assert isinstance(data, dict)
    return data


def test_restic_partial_backup_is_a_warning_through_the_statusfile_check(tmp_path: Path) -> None:
    status_file = tmp_path / "status" / "restic_data.json"  # the directory is created
    rc = run_job(
        "restic_data",
        ["sh", "-c", "exit 3"],
        status_file,
        tool="restic",
        clock=ticking(1000.0, 1012.5),
    )
    assert rc == 3
    assert read(status_file) == {
        "job": "restic_data",
        "tool": "restic",
        "start": 1000.0,
        "end": 1012.5,
        "exit_code": 3,
    }
    figures = measure(status_file, now=1100.0)
    assert figures["backup_last_status"].value == 1  # restic 3: snapshot made, files unreadable
    assert figures["backup_last_exit_code"].value == 3
    assert figures["backup_last_duration_seconds"].value == 12.5
    assert figures["backup_last_run_timestamp_seconds"].value == 1012.5
    assert "backup_last_success_timestamp_seconds" not in figures  # it never succeeded
    assert figures["backup_last_status"].labels == {"job": "restic_data", "tool": "restic"}
    assert os.listdir(status_file.parent) == ["restic_data.json"]  # no temporary file left


def test_a_shell_job_without_tool_says_to_give_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`sh -c 'restic ...'` is recorded as sh: restic's warning exit 3 would be a failure."""
    status_file = tmp_path / "nightly.json"
    script = "restic backup /srv --exclude-caches; exit 3"
    with caplog.at_level(logging.WARNING, logger="agent.jobwrap"):
        rc = run_job("nightly", ["/bin/sh", "-c", script], status_file, clock=ticking(1, 2))
    assert rc == 3, "the job runs anyway: a missing option never skips a backup"
    assert "--tool restic" in caplog.text
    data = read(status_file)
    assert data["tool"] == "sh"
    assert "--tool restic" in str(data["note"])
    check = StatusfileCheck(StatusfileOptions(path=str(status_file)), clock=lambda: 10.0)
    figures = {m.name: m.value for m in check.collect()}
    assert figures["backup_last_status"] == 2
    assert check.last_output is not None
    assert check.last_output.startswith("job nightly: the job ran in the shell `sh`")
    assert "restic's warning exit 3 counts as a failure" in check.last_output
    # Given the tool, exit 3 is restic's warning, and nothing needs saying.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="agent.jobwrap"):
        run_job("nightly", ["sh", "-c", script], status_file, tool="restic", clock=ticking(3, 4))
    assert caplog.text == ""
    assert "note" not in read(status_file)
    assert measure(status_file, now=10.0)["backup_last_status"].value == 1


def test_a_shell_job_that_succeeds_has_nothing_in_the_output(tmp_path: Path) -> None:
    status_file = tmp_path / "dump.json"
    run_job("dump", ["bash", "-c", "true"], status_file, clock=ticking(1, 2))
    check = StatusfileCheck(StatusfileOptions(path=str(status_file)), clock=lambda: 10.0)
    check.collect()
    assert check.last_output is None


def test_success_sets_last_success_and_a_failure_keeps_it(tmp_path: Path) -> None:
    status_file = tmp_path / "db.json"
    assert run_job("db", ["true"], status_file, clock=ticking(100.0, 160.0)) == 0
    assert read(status_file)["last_success"] == 160.0
    assert read(status_file)["tool"] == "true"  # argv[0]'s base name

    assert run_job("db", ["/bin/false"], status_file, clock=ticking(3700.0, 3701.0)) == 1
    data = read(status_file)
    assert (data["tool"], data["exit_code"], data["last_success"]) == ("false", 1, 160.0)
    figures = measure(status_file, now=4000.0)
    assert figures["backup_last_status"].value == 2
    assert figures["backup_last_success_timestamp_seconds"].value == 160.0
    assert figures["backup_last_success_age_seconds"].value == 4000.0 - 160.0

    assert run_job("db", ["true"], status_file, clock=ticking(5000.0, 5001.0)) == 0
    assert read(status_file)["last_success"] == 5001.0


@pytest.mark.parametrize(
    ("argv", "exit_code"),
    [
        pytest.param(["sh", "-c", "exit 12"], 12, id="exit code passed through"),
        pytest.param(["sh", "-c", "kill -TERM $$"], 128 + 15, id="killed by SIGTERM: 128+N"),
        pytest.param(["no-such-backup-tool"], 127, id="command not found: 127 as in sh"),
    ],
)
def test_exit_codes_are_recorded_as_a_shell_reports_them(
    tmp_path: Path, argv: list[str], exit_code: int
) -> None:
    status_file = tmp_path / "job.json"
    assert run_job("job", argv, status_file, clock=ticking(1.0, 2.0)) == exit_code
    assert read(status_file)["exit_code"] == exit_code


def test_the_job_inherits_stdio(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    run_job("job", ["sh", "-c", "echo to-out; echo to-err >&2"], tmp_path / "job.json")
    out, err = capfd.readouterr()
    assert (out, err) == ("to-out\n", "to-err\n")


def test_a_corrupt_previous_status_file_loses_only_last_success(tmp_path: Path) -> None:
    status_file = tmp_path / "job.json"
    status_file.write_text("{half a file")
    assert run_job("job", ["false"], status_file, clock=ticking(1.0, 2.0)) == 1
    assert "last_success" not in read(status_file)
    assert read(status_file)["exit_code"] == 1
