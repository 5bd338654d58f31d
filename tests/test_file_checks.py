"""File-based checks against real files and the real tools: gzip, tar, unzip, pg_dump/pg_restore,
logrotate."""

from __future__ import annotations

import calendar
import datetime
import gzip
import json
import logging
import os
import shutil
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from checks.archive import ArchiveCheck, ArchiveOptions
from checks.base import CheckFailed
from checks.command import CommandResult, run_command
from checks.files import FilesCheck, FilesOptions
from checks.logrotate import LogrotateCheck, LogrotateOptions
from checks.marker import MarkerCheck, MarkerOptions
from checks.settings import ConfigError, Duration, convert
from checks.statusfile import StatusfileCheck, StatusfileOptions
from checks.textfile import TextfileCheck, TextfileOptions
from tests.helpers import FakeClock, tool
from tests.helpers.cases import cases
from tests.helpers.measurements import find, names, wire_safe

DAY = 86400.0
PG = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]

# The node_exporter textfile sample from notes/backup-archive.md §5, without the note's
# "# second run: wrong password" annotation (see test_textfile_malformed_file).
NOTES_SAMPLE = """\
# HELP backup_last_success_timestamp_seconds Unix time of the last fully successful backup.
# TYPE backup_last_success_timestamp_seconds gauge
backup_last_success_timestamp_seconds{job="restic_data",tool="restic"} 1795339033
backup_last_run_timestamp_seconds{job="restic_data",tool="restic"} 1795339040
backup_last_exit_code{job="restic_data",tool="restic"} 1
backup_last_duration_seconds{job="restic_data",tool="restic"} 1
backup_last_errors{job="restic_data",tool="restic"} 0
backup_last_processed_bytes{job="restic_data",tool="restic"} 0
backup_last_added_bytes{job="restic_data",tool="restic"} 0
"""


def write(path: Path, content: str | bytes, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


# --- textfile ----------------------------------------------------------------------------------

TEXTFILE_NAMES = {
    "textfile_mtime_seconds",
    "textfile_age_seconds",
    "textfile_scrape_error",
}


def test_textfile_reads_the_notes_sample(tmp_path: Path, clock: FakeClock) -> None:
    write(tmp_path / "backup.prom", NOTES_SAMPLE, mtime=clock.now - 90)
    out = wire_safe(TextfileCheck(TextfileOptions(directory=str(tmp_path)), clock=clock).collect())
    labels = {"job": "restic_data", "tool": "restic", "file": "backup.prom"}
    assert find(out, "backup_last_exit_code", **labels).value == 1
    assert find(out, "backup_last_success_timestamp_seconds", **labels).value == 1795339033
    assert find(out, "backup_last_run_timestamp_seconds", **labels).value == 1795339040
    assert find(out, "backup_last_added_bytes", **labels).labels == labels
    assert find(out, "textfile_age_seconds", file="backup.prom").value == 90
    assert find(out, "textfile_mtime_seconds", file="backup.prom").value == clock.now - 90
    assert find(out, "textfile_scrape_error", file="backup.prom").value == 0
    assert len(out) == 7 + 3


@pytest.mark.parametrize(
    ("text", "name", "labels"),
    [
        pytest.param(
            "# TYPE jobs_run_total counter\njobs_run_total 7\n",
            "jobs_run_cumulative",
            {},
            id="counter _total becomes _cumulative",
        ),
        pytest.param(
            "# TYPE jobs_run counter\njobs_run 7\n",
            "jobs_run_cumulative",
            {},
            id="counter without _total: the parser adds it, we rename it",
        ),
        pytest.param("errors_total 7\n", "errors_cumulative", {}, id="untyped _total"),
        pytest.param(
            'rsync_bytes{host="db1",check="nightly",file="x.log"} 7\n',
            "rsync_bytes",
            {"exported_host": "db1", "exported_check": "nightly", "exported_file": "x.log"},
            id="reserved and clashing labels become exported_*",
        ),
        pytest.param(
            'rsync_bytes{host="db1",exported_host="db2"} 7\n',
            "rsync_bytes",
            {"exported_host": "db2", "exported_exported_host": "db1"},
            id="renamed label does not overwrite an existing one",
        ),
        pytest.param(
            "job:backup_bytes:rate5m 7\n", "job_backup_bytes_rate5m", {}, id="colons become _"
        ),
    ],
)
def test_textfile_renames_what_the_schema_forbids(
    tmp_path: Path, clock: FakeClock, text: str, name: str, labels: dict[str, str]
) -> None:
    write(tmp_path / "a.prom", text)
    out = wire_safe(TextfileCheck(TextfileOptions(directory=str(tmp_path)), clock=clock).collect())
    samples = [m for m in out if m.name not in TEXTFILE_NAMES]
    assert [(m.name, m.value, m.labels) for m in samples] == [
        (name, 7, {**labels, "file": "a.prom"})
    ]


def test_textfile_leaves_out_values_the_wire_cannot_carry(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "a.prom", "a NaN\nb +Inf\nc -Inf\nd 4\n")
    with caplog.at_level(logging.WARNING):
        out = wire_safe(
            TextfileCheck(TextfileOptions(directory=str(tmp_path)), clock=clock).collect()
        )
    assert names(out) == TEXTFILE_NAMES | {"d"}
    assert find(out, "textfile_scrape_error").value == 0
    assert "left out 3 sample names" in caplog.text


def test_textfile_leaves_out_label_sets_too_large_for_a_series_key(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    big = ",".join(f'l{i}="{"x" * 1000}"' for i in range(3))  # each value within its limit
    write(tmp_path / "a.prom", f'a{{{big}}} 1\nb{{l="small"}} 2\n')
    with caplog.at_level(logging.WARNING):
        out = wire_safe(
            TextfileCheck(TextfileOptions(directory=str(tmp_path)), clock=clock).collect()
        )
    assert names(out) == TEXTFILE_NAMES | {"b"}
    assert "labels over 2048 bytes" in caplog.text


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(
            NOTES_SAMPLE.replace(
                'tool="restic"} 1\n', 'tool="restic"} 1        # second run: wrong password\n', 1
            ),
            id="notes sample with its inline annotation",
        ),
        pytest.param("backup_ok{job=\n", id="cut off mid-line"),
        pytest.param('backup_ok{a="1",a="2"} 1\n', id="duplicate label"),
        pytest.param("backup ok 1\n", id="value is not a number"),
        pytest.param(b"\xff\xfe backup_ok 1\n", id="not UTF-8"),
    ],
)
def test_textfile_malformed_file_is_a_scrape_error_and_others_still_count(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, content: str | bytes
) -> None:
    write(tmp_path / "bad.prom", content, mtime=clock.now - 600)
    write(tmp_path / "good.prom", "backup_ok 1\n")
    check = TextfileCheck(TextfileOptions(directory=str(tmp_path)), clock=clock)
    with caplog.at_level(logging.WARNING):
        out = wire_safe(check.collect())
    assert find(out, "textfile_scrape_error", file="bad.prom").value == 1
    assert find(out, "textfile_age_seconds", file="bad.prom").value == 600
    assert {m.name for m in out if m.labels["file"] == "bad.prom"} == TEXTFILE_NAMES
    assert find(out, "backup_ok", file="good.prom").value == 1
    assert find(out, "textfile_scrape_error", file="good.prom").value == 0
    assert "bad.prom is not in the Prometheus text format" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check.collect()
    assert caplog.text == ""  # said once, not every cycle


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda p: p / "missing", "does not exist", id="missing directory"),
        pytest.param(lambda p: p, "no file in", id="no matching file"),
    ],
)
def test_textfile_without_anything_to_read_fails(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    write(tmp_path / "notes.txt", "not a .prom file")
    with pytest.raises(CheckFailed, match=message):
        TextfileCheck(TextfileOptions(directory=str(make(tmp_path)))).collect()


# --- statusfile --------------------------------------------------------------------------------

STATUSFILE_NAMES = {
    "backup_last_run_timestamp_seconds",
    "backup_last_exit_code",
    "backup_last_status",
    "backup_last_success_timestamp_seconds",
    "backup_last_success_age_seconds",
    "backup_last_duration_seconds",
    "backup_last_errors",
    "backup_last_processed_bytes",
    "backup_last_added_bytes",
    "backup_statusfile_age_seconds",
}


def statusfile(tmp_path: Path, clock: FakeClock, data: Any, name: str = "nightly.json") -> Path:
    return write(tmp_path / name, json.dumps(data), mtime=clock.now - 30)


def test_statusfile_reports_every_field(tmp_path: Path, clock: FakeClock) -> None:
    path = statusfile(
        tmp_path,
        clock,
        {
            "job": "restic_data",
            "tool": "restic",
            "start": clock.now - 3600,
            "end": "2027-01-15T08:00:00Z",
            "exit_code": 3,
            "errors": 2,
            "last_success": clock.now - 2 * DAY,
            "processed_bytes": 500038,
            "added_bytes": 108114,
        },
    )
    check = StatusfileCheck(StatusfileOptions(path=str(path)), clock=clock)
    out = wire_safe(check.collect())
    assert names(out) == STATUSFILE_NAMES
    assert all(m.labels == {"job": "restic_data", "tool": "restic"} for m in out)
    end = calendar.timegm((2027, 1, 15, 8, 0, 0))
    assert find(out, "backup_last_run_timestamp_seconds").value == end
    assert find(out, "backup_last_duration_seconds").value == end - (clock.now - 3600)
    assert find(out, "backup_last_exit_code").value == 3
    assert find(out, "backup_last_status").value == 1
    assert find(out, "backup_last_success_age_seconds").value == 2 * DAY
    assert find(out, "backup_last_errors").value == 2
    assert find(out, "backup_last_added_bytes").value == 108114
    assert find(out, "backup_statusfile_age_seconds").value == 30


@pytest.mark.parametrize(
    ("tool_name", "exit_code", "status"),
    [
        pytest.param("restic", 0, 0, id="restic 0: OK"),
        pytest.param("restic", 3, 1, id="restic 3 (unreadable files, snapshot made): warning"),
        pytest.param("restic", 12, 2, id="restic 12 (wrong password): error"),
        pytest.param("/usr/bin/restic", 3, 1, id="tool given as a path"),
        pytest.param("borg", 1, 1, id="borg 1: warning"),
        pytest.param("borg", 2, 2, id="borg 2: error"),
        pytest.param("borg", 105, 1, id="borg modern warning 100-127"),
        pytest.param("borg", 130, 2, id="borg 128+N signal: error"),
        pytest.param("rsnapshot", 2, 1, id="rsnapshot 2: warning"),
        pytest.param("rsnapshot", 1, 2, id="rsnapshot 1: fatal"),
        pytest.param("pg_dump", 3, 2, id="unknown tool, nonzero: error"),
        pytest.param(None, 1, 2, id="no tool, nonzero: error"),
    ],
)
def test_statusfile_status_knows_each_tools_warning_codes(
    tmp_path: Path, clock: FakeClock, tool_name: str | None, exit_code: int, status: int
) -> None:
    data: dict[str, Any] = {"exit_code": exit_code, "end": clock.now}
    if tool_name:
        data["tool"] = tool_name
    path = statusfile(tmp_path, clock, data)
    out = wire_safe(StatusfileCheck(StatusfileOptions(path=str(path)), clock=clock).collect())
    assert find(out, "backup_last_exit_code").value == exit_code
    assert find(out, "backup_last_status").value == status


@pytest.mark.parametrize(
    ("data", "job_option", "job"),
    [
        pytest.param({"exit_code": 0}, None, "nightly", id="no job anywhere: the file's stem"),
        pytest.param({"job": "db", "exit_code": 0}, None, "db", id="the file's job"),
        pytest.param({"job": "db", "exit_code": 0}, "dumps", "dumps", id="the option wins"),
    ],
)
def test_statusfile_job_label(
    tmp_path: Path, clock: FakeClock, data: dict[str, Any], job_option: str | None, job: str
) -> None:
    path = statusfile(tmp_path, clock, data)
    options = StatusfileOptions(path=str(path), job=job_option)
    out = StatusfileCheck(options, clock=clock).collect()
    assert {m.labels["job"] for m in out} == {job}
    assert all("tool" not in m.labels for m in out)


def test_statusfile_success_without_last_success_counts_its_end(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = statusfile(
        tmp_path, clock, {"start": clock.now - 100, "end": clock.now - 40, "exit_code": 0}
    )
    out = StatusfileCheck(StatusfileOptions(path=str(path)), clock=clock).collect()
    assert find(out, "backup_last_success_age_seconds").value == 40
    assert "backup_last_errors" not in names(out)  # only what the file says


def test_statusfile_naive_iso_time_is_local(tmp_path: Path, clock: FakeClock, berlin: None) -> None:
    path = statusfile(tmp_path, clock, {"start": "2026-11-22T09:07:38.000000", "exit_code": 1})
    out = StatusfileCheck(StatusfileOptions(path=str(path)), clock=clock).collect()
    assert find(out, "backup_last_run_timestamp_seconds").value == calendar.timegm(
        (2026, 11, 22, 8, 7, 38)
    )


MALFORMED_STATUS = {"cut off": '{"exit_code": 0', "not an object": "[1, 2]", "empty": ""}


@pytest.mark.parametrize("content", cases(MALFORMED_STATUS))
def test_statusfile_malformed_single_file_fails_with_its_age(
    tmp_path: Path, clock: FakeClock, content: str
) -> None:
    path = write(tmp_path / "nightly.json", content, mtime=clock.now - 30)
    with pytest.raises(CheckFailed, match=r"nightly\.json") as failed:
        StatusfileCheck(StatusfileOptions(path=str(path)), clock=clock).collect()
    [age] = wire_safe(failed.value.measurements)
    assert (age.name, age.value, age.labels) == (
        "backup_statusfile_age_seconds",
        30,
        {"job": "nightly"},
    )


def test_statusfile_glob_skips_a_malformed_file_with_a_warning(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    statusfile(tmp_path, clock, {"job": "db", "exit_code": 0}, name="db.json")
    write(tmp_path / "www.json", "{not json", mtime=clock.now - 5)
    with caplog.at_level(logging.WARNING):
        out = StatusfileCheck(
            StatusfileOptions(path=str(tmp_path / "*.json")), clock=clock
        ).collect()
    assert find(out, "backup_last_status", job="db").value == 0
    assert find(out, "backup_statusfile_age_seconds", job="www").value == 5
    assert names([m for m in out if m.labels["job"] == "www"]) == {"backup_statusfile_age_seconds"}
    assert "www.json is not valid JSON" in caplog.text


def test_statusfile_bad_field_is_skipped_with_a_warning(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    path = statusfile(tmp_path, clock, {"exit_code": "three", "errors": 4})
    with caplog.at_level(logging.WARNING):
        out = StatusfileCheck(StatusfileOptions(path=str(path)), clock=clock).collect()
    assert names(out) == {"backup_last_errors", "backup_statusfile_age_seconds"}
    assert "ignoring 'exit_code'" in caplog.text


@pytest.mark.parametrize(
    "path",
    [pytest.param("nightly.json", id="missing file"), pytest.param("*.json", id="empty glob")],
)
def test_statusfile_without_a_file_fails(tmp_path: Path, path: str) -> None:
    with pytest.raises(CheckFailed, match="no status file"):
        StatusfileCheck(StatusfileOptions(path=str(tmp_path / path))).collect()


def test_statusfile_job_option_with_a_glob_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="job") as error:
        convert({"type": "statusfile", "path": "/srv/*.json", "job": "x"}, StatusfileOptions)
    assert error.value.path == "job"


# --- marker ------------------------------------------------------------------------------------


def test_marker_present_with_its_age(tmp_path: Path, clock: FakeClock) -> None:
    write(tmp_path / "db.ok", "", mtime=clock.now - 120)
    write(tmp_path / "www.ok", "", mtime=clock.now - 60)
    out = wire_safe(MarkerCheck(MarkerOptions(path=str(tmp_path / "*.ok")), clock=clock).collect())
    assert names(out) == {"marker_present", "marker_age_seconds"}
    db = str(tmp_path / "db.ok")
    assert find(out, "marker_present", marker=db).value == 1
    assert find(out, "marker_age_seconds", marker=db).value == 120
    assert find(out, "marker_age_seconds", marker=str(tmp_path / "www.ok")).value == 60


@pytest.mark.parametrize(
    "path",
    [pytest.param("db.ok", id="file missing"), pytest.param("*.ok", id="glob matches nothing")],
)
def test_marker_absent_is_zero_labelled_with_the_configured_path(
    tmp_path: Path, clock: FakeClock, path: str
) -> None:
    configured = str(tmp_path / path)
    options = MarkerOptions(path=configured, name_label="success_marker")
    out = wire_safe(MarkerCheck(options, clock=clock).collect())
    assert [(m.name, m.value, m.labels) for m in out] == [
        ("marker_present", 0.0, {"success_marker": configured})
    ]


@pytest.mark.parametrize(
    "label",
    [pytest.param("host", id="reserved"), pytest.param("1st", id="not a label name")],
)
def test_marker_name_label_must_be_a_usable_label(label: str) -> None:
    with pytest.raises(ConfigError) as error:
        convert({"type": "marker", "path": "/x", "name_label": label}, MarkerOptions)
    assert error.value.path == "name_label"


# --- files -------------------------------------------------------------------------------------

FILES_NAMES = {
    "files_count",
    "files_bytes",
    "files_newest_age_seconds",
    "files_oldest_age_seconds",
    "files_newest_size_bytes",
}


def test_files_counts_sizes_and_ages(tmp_path: Path, clock: FakeClock) -> None:
    write(tmp_path / "dumps/2026/a.sql", b"x" * 100, mtime=clock.now - 3 * DAY)
    write(tmp_path / "dumps/2026/b.sql", b"x" * 200, mtime=clock.now - DAY)
    write(tmp_path / "dumps/c.sql", b"x" * 50, mtime=clock.now - 2 * DAY)
    write(tmp_path / "dumps/c.txt", b"x" * 999, mtime=clock.now)
    (tmp_path / "dumps/dir.sql").mkdir()  # a directory is not a file
    pattern = str(tmp_path / "dumps/**/*.sql")
    out = wire_safe(FilesCheck(FilesOptions(path=pattern), clock=clock).collect())
    assert names(out) == FILES_NAMES
    assert all(m.labels == {"files": pattern} for m in out)
    assert find(out, "files_count").value == 3
    assert find(out, "files_bytes").value == 350
    assert find(out, "files_newest_age_seconds").value == DAY
    assert find(out, "files_oldest_age_seconds").value == 3 * DAY
    assert find(out, "files_newest_size_bytes").value == 200


def test_files_none_matching_is_a_count_of_zero(tmp_path: Path, clock: FakeClock) -> None:
    options = FilesOptions(path=str(tmp_path / "*.sql"), label="db dumps")
    out = wire_safe(FilesCheck(options, clock=clock).collect())
    assert [(m.name, m.value, m.labels) for m in out] == [
        ("files_count", 0, {"files": "db dumps"}),
        ("files_bytes", 0, {"files": "db dumps"}),
    ]


# --- archive -----------------------------------------------------------------------------------

ARCHIVE_NAMES = {
    "archive_files",
    "archive_bytes",
    "archive_newest_file_age_seconds",
    "archive_oldest_file_age_seconds",
    "archive_retention_breached",
    "archive_files_past_retention",
    "archive_newest_too_old",
    "archive_verify_failures",
    "archive_verify_success",
    "archive_verified_files",
    "archive_largest_gap_seconds",
    "archive_missing_files",
    "archive_files_in_future",
}


class CountingRunner:
    """run_command, counting the calls and checking each gets its own bounded timeout."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str], *, timeout: float, **kwargs: Any) -> CommandResult:
        assert 0 < timeout <= 300
        self.calls.append([Path(argv[0]).name, *argv[1:]])
        return run_command(argv, timeout=timeout, **kwargs)

    def files(self) -> set[str]:
        return {Path(argv[-1]).name for argv in self.calls}


def make_tar_gz(path: Path, tmp_path: Path) -> Path:
    source = tmp_path / "source"
    for index in range(20):
        write(source / f"file{index}.txt", os.urandom(2048).hex())
    subprocess.run(["tar", "-czf", str(path), "-C", str(source), "."], check=True)
    return path


def make_corrupt_gzip(path: Path) -> Path:
    data = bytearray(gzip.compress(os.urandom(64 * 1024)))
    data[len(data) // 2] ^= 0xFF  # flip the bits of one byte in the middle: a CRC error
    return write(path, bytes(data))


def make_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.txt", "hello " * 1000)
    return path


def age(path: Path, clock: FakeClock, seconds: float) -> Path:
    os.utime(path, (clock.now - seconds, clock.now - seconds))
    return path


@pytest.fixture
def archive_dir(tmp_path: Path, clock: FakeClock) -> Path:
    """A good .tar.gz (1 day old), a corrupt .gz (10 days), a good .zip (40 days), a .txt."""
    directory = tmp_path / "archive"
    directory.mkdir()
    age(make_tar_gz(directory / "logs-1.tar.gz", tmp_path), clock, DAY)
    age(make_corrupt_gzip(directory / "logs-2.gz"), clock, 10 * DAY)
    age(make_zip(directory / "logs-3.zip"), clock, 40 * DAY)
    age(write(directory / "README.txt", "not verified"), clock, 2 * DAY)
    return directory


def archive_check(
    directory: Path, clock: FakeClock, state_dir: Path | None = None, **options: Any
) -> tuple[ArchiveCheck, CountingRunner]:
    runner = CountingRunner()
    options.setdefault("retention", Duration(30 * DAY))
    check = ArchiveCheck(
        ArchiveOptions(path=str(directory / "*"), **options),
        clock=clock,
        state_dir=state_dir,
        run=runner,
    )
    return check, runner


def test_archive_reports_every_declared_measurement(
    archive_dir: Path, clock: FakeClock, tmp_path: Path
) -> None:
    check, runner = archive_check(
        archive_dir, clock, max_age=Duration(2 * DAY), expected_interval=Duration(DAY)
    )
    out = wire_safe(check.collect())
    assert names(out) == ARCHIVE_NAMES
    assert all(m.labels == {"archive": str(archive_dir / "*")} for m in out)
    assert find(out, "archive_files").value == 4
    assert find(out, "archive_bytes").value == sum(p.stat().st_size for p in archive_dir.iterdir())
    assert find(out, "archive_newest_file_age_seconds").value == DAY
    assert find(out, "archive_oldest_file_age_seconds").value == 40 * DAY
    assert find(out, "archive_newest_too_old").value == 0
    assert find(out, "archive_verified_files").value == 3  # the .txt has no verifier
    assert find(out, "archive_verify_failures").value == 1
    assert find(out, "archive_verify_success").value == 0
    assert find(out, "archive_largest_gap_seconds").value == 30 * DAY
    assert find(out, "archive_files_in_future").value == 0
    # The file that failed is named where the call quotes it, not only in the agent's log.
    assert check.last_output is not None
    assert f"failed verification: {archive_dir / 'logs-2.gz'} (gzip exit 1" in check.last_output
    assert sorted(runner.calls) == [
        ["gzip", "-t", str(archive_dir / "logs-1.tar.gz")],
        ["gzip", "-t", str(archive_dir / "logs-2.gz")],
        ["tar", "--index-file=/dev/null", "-tzf", str(archive_dir / "logs-1.tar.gz")],
        ["unzip", "-tq", str(archive_dir / "logs-3.zip")],
    ]


def daily_dumps(directory: Path, clock: FakeClock, days_old: list[float]) -> None:
    directory.mkdir()
    for days in days_old:
        age(write(directory / f"db-{days:g}.sql", "dump"), clock, days * DAY)


@pytest.mark.parametrize(
    ("days_old", "gap", "missing"),
    [
        pytest.param([0.1, 1.1, 2.1, 3.1], 1.0, 0, id="every day"),
        pytest.param([0.1, 1.1, 3.1, 4.1], 2.0, 1, id="one day missing"),
        pytest.param([0.1, 4.1, 5.1], 4.0, 3, id="three days missing"),
        pytest.param([0.1, 1.4, 2.1, 3.3], 1.3, 0, id="late and early runs are no gap"),
        pytest.param([0.1], None, 0, id="one file: no gap to measure"),
    ],
)
def test_archive_measures_gaps_against_the_expected_interval(
    tmp_path: Path, clock: FakeClock, days_old: list[float], gap: float | None, missing: int
) -> None:
    daily_dumps(tmp_path / "dumps", clock, days_old)
    check, _ = archive_check(
        tmp_path / "dumps", clock, verify=False, expected_interval=Duration(DAY)
    )
    out = check.collect()
    assert find(out, "archive_missing_files").value == missing
    if gap is None:
        assert "archive_largest_gap_seconds" not in names(out)
    else:
        assert find(out, "archive_largest_gap_seconds").value == pytest.approx(gap * DAY)
    if missing:
        assert f"{missing} file(s) missing between" in (check.last_output or "")
    else:
        assert check.last_output is None


def test_archive_file_dated_in_the_future_is_named_and_gives_no_negative_age(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    daily_dumps(tmp_path / "dumps", clock, [-0.5, 1, 2])  # one made "tomorrow": a clock wrong
    check, _ = archive_check(tmp_path / "dumps", clock, verify=False)
    with caplog.at_level(logging.WARNING):
        out = check.collect()
    assert find(out, "archive_files_in_future").value == 1
    assert find(out, "archive_newest_file_age_seconds").value == 0
    assert all(m.value >= 0 for m in out if m.name.endswith("_age_seconds"))
    future = str(tmp_path / "dumps" / "db--0.5.sql")
    assert f"dated in the future: {future}" in (check.last_output or "")
    assert future in caplog.text


@pytest.mark.parametrize(
    ("retention", "breached", "past"),
    [
        pytest.param(30 * DAY, 1, 1, id="one file past 30d"),
        pytest.param(5 * DAY, 1, 2, id="two files past 5d"),
        pytest.param(60 * DAY, 0, 0, id="none past 60d"),
    ],
)
def test_archive_retention(
    archive_dir: Path, clock: FakeClock, retention: float, breached: int, past: int
) -> None:
    check, _ = archive_check(archive_dir, clock, retention=Duration(retention), verify=False)
    out = check.collect()
    assert find(out, "archive_retention_breached").value == breached
    assert find(out, "archive_files_past_retention").value == past
    assert not {n for n in names(out) if "verif" in n or "too_old" in n}


@pytest.mark.parametrize(
    ("max_age", "too_old"),
    [
        pytest.param(12 * 3600, 1, id="newest 1d old, max 12h: job not running"),
        pytest.param(2 * DAY, 0, id="newest 1d old, max 2d"),
    ],
)
def test_archive_newest_too_old(
    archive_dir: Path, clock: FakeClock, max_age: float, too_old: int
) -> None:
    check, _ = archive_check(archive_dir, clock, max_age=Duration(max_age), verify=False)
    assert find(check.collect(), "archive_newest_too_old").value == too_old


def test_archive_empty_is_counted_and_too_old(tmp_path: Path, clock: FakeClock) -> None:
    check, runner = archive_check(tmp_path, clock, max_age=Duration(DAY))
    out = wire_safe(check.collect())
    assert {m.name: m.value for m in out} == {
        "archive_files": 0,
        "archive_bytes": 0,
        "archive_retention_breached": 0,
        "archive_files_past_retention": 0,
        "archive_files_in_future": 0,
        "archive_newest_too_old": 1,
        "archive_verified_files": 0,
        "archive_verify_failures": 0,
        "archive_verify_success": 1,
    }
    assert runner.calls == []


@pytest.mark.parametrize(
    ("name", "make", "ok"),
    [
        pytest.param("good.tar.gz", make_tar_gz, True, id="good tar.gz"),
        pytest.param(
            "cut.tar.gz",
            lambda p, t: write(p, make_tar_gz(t / "full.tar.gz", t).read_bytes()[:3000]),
            False,
            id="truncated tar.gz",
        ),
        pytest.param("flipped.gz", lambda p, t: make_corrupt_gzip(p), False, id="flipped gz"),
        pytest.param(
            "good.tar",
            lambda p, t: write(p, gzip.decompress(make_tar_gz(t / "x.tgz", t).read_bytes())),
            True,
            id="good tar",
        ),
        pytest.param(
            "cut.tar",
            lambda p, t: write(p, gzip.decompress(make_tar_gz(t / "x.tgz", t).read_bytes())[:5000]),
            False,
            id="truncated tar",
        ),
        pytest.param("good.zip", lambda p, t: make_zip(p), True, id="good zip"),
        pytest.param(
            "cut.zip",
            lambda p, t: write(p, make_zip(t / "full.zip").read_bytes()[:-30]),
            False,
            id="truncated zip",
        ),
    ],
)
def test_archive_verifies_each_format_with_its_tool(
    tmp_path: Path, clock: FakeClock, name: str, make: Callable[[Path, Path], Path], ok: bool
) -> None:
    directory = tmp_path / "archive"
    directory.mkdir()
    make(directory / name, tmp_path)
    check, _ = archive_check(directory, clock)
    out = check.collect()
    assert find(out, "archive_verified_files").value == 1
    assert find(out, "archive_verify_failures").value == (0 if ok else 1)
    assert find(out, "archive_verify_success").value == (1 if ok else 0)


def test_archive_verifies_once_and_again_when_a_file_changes(
    archive_dir: Path, clock: FakeClock, tmp_path: Path
) -> None:
    state_dir = tmp_path / "state" / "archive"  # not created yet, as the agent hands it over
    check, runner = archive_check(archive_dir, clock, state_dir=state_dir)
    first = check.collect()
    assert runner.files() == {"logs-1.tar.gz", "logs-2.gz", "logs-3.zip"}
    cache = json.loads((state_dir / "verify-cache.json").read_text())
    assert {Path(p).name: v["ok"] for p, v in cache["files"].items()} == {
        "logs-1.tar.gz": True,
        "logs-2.gz": False,
        "logs-3.zip": True,
    }
    assert cache["files"][str(archive_dir / "logs-2.gz")]["detail"].startswith("gzip exit 1: ")
    assert not [p for p in state_dir.iterdir() if p.name != "verify-cache.json"]  # no temp left

    runner.calls.clear()
    assert check.collect() == first
    assert runner.calls == []  # cached in memory

    again, runner = archive_check(archive_dir, clock, state_dir=state_dir)
    assert again.collect() == first
    assert runner.calls == []  # cached on disk, across a restart: a failed file stays failed

    # The job rewrites the corrupt file with a good one: only that file is read again.
    age(write(archive_dir / "logs-2.gz", gzip.compress(b"fixed")), clock, 10 * DAY)
    out = again.collect()
    assert runner.calls == [["gzip", "-t", str(archive_dir / "logs-2.gz")]]
    assert find(out, "archive_verify_failures").value == 0
    assert find(out, "archive_verify_success").value == 1

    # A purged file leaves the cache.
    (archive_dir / "logs-3.zip").unlink()
    again.collect()
    cache = json.loads((state_dir / "verify-cache.json").read_text())
    assert str(archive_dir / "logs-3.zip") not in cache["files"]


def test_archive_verifies_newest_first_at_most_max_files_per_run(
    archive_dir: Path, clock: FakeClock
) -> None:
    check, runner = archive_check(archive_dir, clock, verify_max_files=1)
    assert find(check.collect(), "archive_verified_files").value == 1
    assert runner.files() == {"logs-1.tar.gz"}
    assert find(check.collect(), "archive_verified_files").value == 2
    assert runner.files() == {"logs-1.tar.gz", "logs-2.gz"}


def test_archive_stops_verifying_when_its_time_is_up(archive_dir: Path, clock: FakeClock) -> None:
    ticks = iter(range(0, 10_000, 500))  # every reading of the monotonic clock: 500 s later
    runner = CountingRunner()
    options = ArchiveOptions(path=str(archive_dir / "*"), retention=Duration(30 * DAY))
    check = ArchiveCheck(options, clock=clock, monotonic=lambda: next(ticks), run=runner)
    assert find(check.collect(), "archive_verified_files").value == 0  # budget: 0.8 x 600 s
    assert runner.calls == []


def test_archive_without_unzip_skips_zip_files_naming_the_package(
    archive_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    runner = CountingRunner()
    check = ArchiveCheck(
        ArchiveOptions(path=str(archive_dir / "*"), retention=Duration(30 * DAY)),
        clock=clock,
        run=runner,
        which=lambda name: None if name == "unzip" else shutil.which(name),
    )
    with caplog.at_level(logging.WARNING):
        out = check.collect()
    assert "logs-3.zip" not in runner.files()
    assert find(out, "archive_verified_files").value == 2
    assert "install the Debian package unzip" in caplog.text


# --- archive: PostgreSQL custom-format dumps -------------------------------------------------


@pytest.fixture(scope="module")
def pg_dumps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """A real `pg_dump -Fc` of a small table, and the same dump cut off at 60 %."""
    pg_dump = tool("pg_dump", "postgresql-client")
    psql = tool("psql", "postgresql-client")
    schema = f"runwatch_archive_test_{os.getpid()}"
    setup = subprocess.run(
        [psql, *PG, "-d", "test", "-v", "ON_ERROR_STOP=1", "-qc",
         f"create schema {schema}; create table {schema}.t as "
         "select g, md5(g::text) from generate_series(1, 20000) g"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if setup.returncode != 0:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 (database test, user postgres): "
                    f"{setup.stderr.strip()}")  # fmt: skip
    directory = tmp_path_factory.mktemp("pgdumps")
    good = directory / "test.dump"
    try:
        subprocess.run([pg_dump, *PG, "-Fc", "-n", schema, "-f", str(good), "test"], check=True)
    finally:
        subprocess.run([psql, *PG, "-d", "test", "-qc", f"drop schema {schema} cascade"],
                       capture_output=True, check=False)  # fmt: skip
    truncated = directory / "truncated.dump"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) * 6 // 10])
    yield good, truncated


def test_archive_truncated_pg_dump_fails_the_full_read_that_list_would_pass(
    pg_dumps: tuple[Path, Path], tmp_path: Path, clock: FakeClock
) -> None:
    good, truncated = pg_dumps
    pg_restore = tool("pg_restore", "postgresql-client")
    # The trap from the notes: --list reads only the table of contents, and says all is well.
    listed = subprocess.run(
        [pg_restore, "--list", str(truncated)], capture_output=True, check=False
    )
    assert listed.returncode == 0
    directory = tmp_path / "dumps"
    directory.mkdir()
    shutil.copy(good, directory / "good.pgdump")
    shutil.copy(truncated, directory / "truncated.dump")
    shutil.copy(good, directory / "no-extension")  # custom format found by its PGDMP magic
    check, runner = archive_check(directory, clock, state_dir=tmp_path / "state")
    out = check.collect()
    assert find(out, "archive_verified_files").value == 3
    assert find(out, "archive_verify_failures").value == 1
    assert sorted(runner.calls) == sorted(
        ["pg_restore", "-f", "/dev/null", str(directory / name)]
        for name in ("good.pgdump", "truncated.dump", "no-extension")
    )
    cache = json.loads((tmp_path / "state" / "verify-cache.json").read_text())
    failed = cache["files"][str(directory / "truncated.dump")]
    assert failed["ok"] is False
    assert "end of file" in failed["detail"]


# --- logrotate ---------------------------------------------------------------------------------


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is Europe/Berlin (UTC+1, UTC+2 in summer) for the test."""
    if not Path("/usr/share/zoneinfo/Europe/Berlin").exists():
        pytest.skip("no time zone data (Debian package: tzdata)")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


LOGROTATE_STATUS = """\
logrotate state -- version 2
"/var/log/syslog" 2026-11-22-9:16:42
"/var/log/apt/history.log" 2026-7-1-12:0:0
"/var/log/old.log" 2013-1-2
"/var/log/with \\"quote\\".log" 2026-11-22-0:0:0
a line logrotate never wrote
"""


def test_logrotate_parses_local_times(
    tmp_path: Path, clock: FakeClock, berlin: None, caplog: pytest.LogCaptureFixture
) -> None:
    status = write(tmp_path / "status", LOGROTATE_STATUS)
    check = LogrotateCheck(LogrotateOptions(status_file=str(status)), clock=clock)
    with caplog.at_level(logging.WARNING):
        out = wire_safe(check.collect())
    assert names(out) == {
        "logrotate_last_rotation_timestamp_seconds",
        "logrotate_last_rotation_age_seconds",
        "logrotate_never_rotated",
    }
    stamps = {m.labels["file"]: m.value for m in out if m.name.endswith("timestamp_seconds")}
    assert stamps == {
        "/var/log/syslog": calendar.timegm((2026, 11, 22, 8, 16, 42)),  # CET, UTC+1
        "/var/log/old.log": calendar.timegm((2013, 1, 1, 23, 0, 0)),  # old logrotate: date only
    }
    syslog_age = find(out, "logrotate_last_rotation_age_seconds", file="/var/log/syslog")
    assert syslog_age.value == clock.now - stamps["/var/log/syslog"]
    never = {m.labels["file"]: m.value for m in out if m.name == "logrotate_never_rotated"}
    # On the hour to the second: logrotate's placeholder for a log it has only seen.
    assert never == {
        "/var/log/syslog": 0,
        "/var/log/old.log": 0,
        "/var/log/apt/history.log": 1,
        '/var/log/with "quote".log': 1,
    }
    assert check.last_output is not None
    assert "never rotated: /var/log/apt/history.log (seen since 2026-07-01 12:00)" in (
        check.last_output
    )
    assert "left out 1 unreadable lines" in caplog.text


def test_logrotate_on_the_hour_with_a_rotated_file_is_a_rotation(
    tmp_path: Path, clock: FakeClock
) -> None:
    log = write(tmp_path / "app.log", "")
    write(tmp_path / "app.log.1.gz", "")
    status = write(tmp_path / "status", f'"{log}" 2026-11-22-3:0:0\n')
    out = LogrotateCheck(LogrotateOptions(status_file=str(status)), clock=clock).collect()
    assert find(out, "logrotate_never_rotated").value == 0
    assert (
        find(out, "logrotate_last_rotation_timestamp_seconds").value
        == datetime.datetime(2026, 11, 22, 3).timestamp()
    )


def test_logrotate_log_only_seen_by_real_logrotate_is_never_rotated(tmp_path: Path) -> None:
    logrotate = shutil.which("logrotate") or tool("/usr/sbin/logrotate", "logrotate")
    log = write(tmp_path / "logs" / "app.log", "a line\n")
    config = write(tmp_path / "logrotate.conf", f"{log} {{\n  weekly\n  rotate 2\n}}\n")
    state = tmp_path / "state"
    subprocess.run([logrotate, "--state", str(state), str(config)], check=True)
    assert not (tmp_path / "logs" / "app.log.1").exists()  # seen, not rotated
    check = LogrotateCheck(LogrotateOptions(status_file=str(state)))
    out = check.collect()
    assert [(m.name, m.value) for m in out] == [("logrotate_never_rotated", 1.0)]
    assert f"never rotated: {log}" in (check.last_output or "")


def test_logrotate_include_selects_logs(tmp_path: Path, clock: FakeClock) -> None:
    status = write(tmp_path / "status", LOGROTATE_STATUS)
    options = LogrotateOptions(status_file=str(status), include=["/var/log/apt/*"])
    out = LogrotateCheck(options, clock=clock).collect()
    assert {m.labels["file"] for m in out} == {"/var/log/apt/history.log"}


def test_logrotate_state_written_by_real_logrotate(tmp_path: Path, berlin: None) -> None:
    logrotate = shutil.which("logrotate") or tool("/usr/sbin/logrotate", "logrotate")
    log = write(tmp_path / "logs" / "app.log", "a line\n")
    config = write(tmp_path / "logrotate.conf", f"{log} {{\n  rotate 2\n  missingok\n}}\n")
    state = tmp_path / "state"
    before = time.time()
    subprocess.run([logrotate, "--state", str(state), "--force", str(config)], check=True)
    out = LogrotateCheck(LogrotateOptions(status_file=str(state))).collect()
    rotated = find(out, "logrotate_last_rotation_timestamp_seconds", file=str(log)).value
    assert find(out, "logrotate_never_rotated").value == 0
    # logrotate writes whole seconds of local time; read as UTC they would be an hour off.
    assert before - 1 <= rotated <= time.time()
    assert (tmp_path / "logs" / "app.log.1").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "`status_file`", id="missing file names the option"),
        pytest.param("logrotate state -- version 2\n", "has logrotate run", id="no entries"),
    ],
)
def test_logrotate_without_entries_fails(tmp_path: Path, content: str | None, message: str) -> None:
    status = tmp_path / "status"
    if content is not None:
        write(status, content)
    with pytest.raises(CheckFailed, match=message):
        LogrotateCheck(LogrotateOptions(status_file=str(status))).collect()


# --- registration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "check_class"),
    [
        pytest.param({"type": "textfile", "directory": "/x"}, TextfileCheck, id="textfile"),
        pytest.param({"type": "statusfile", "path": "/x.json"}, StatusfileCheck, id="statusfile"),
        pytest.param({"type": "marker", "path": "/x"}, MarkerCheck, id="marker"),
        pytest.param({"type": "files", "path": "/x/*"}, FilesCheck, id="files"),
        pytest.param(
            {"type": "archive", "path": "/x/*", "retention": "30d"}, ArchiveCheck, id="archive"
        ),
        pytest.param({"type": "logrotate"}, LogrotateCheck, id="logrotate"),
    ],
)
def test_checks_are_registered_and_built_from_config(
    tmp_path: Path, config: dict[str, Any], check_class: type
) -> None:
    from checks.registry import AnyCheckOptions, build_check

    options = convert(config, AnyCheckOptions)
    check = build_check(options, state_dir=tmp_path / "state")
    assert isinstance(check, check_class)
    assert check.name == config["type"]


def test_archive_runs_every_15_minutes_with_a_long_timeout() -> None:
    options = convert({"type": "archive", "path": "/x/*", "retention": "30d"}, ArchiveOptions)
    assert (options.default_interval, options.default_timeout) == (900.0, 600.0)
    assert options.retention == 30 * DAY
