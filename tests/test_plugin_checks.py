"""Service checks against real programs: monitoring-plugins, processes, sockets, HTTP(S), apt."""

from __future__ import annotations

import datetime
import http.server
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import psutil
import pytest

from checks.base import CheckFailed
from checks.http import HttpCheck, HttpOptions
from checks.pgarchive import PgArchiverOptions
from checks.plugin import PLUGIN_DIRS, PerfValue, PluginCheck, PluginOptions, parse_output
from checks.plugin import parse_perfdata as perf
from checks.process import ProcessCheck, ProcessOptions
from checks.registry import AnyCheckOptions, build_check
from checks.schema import Measurement
from checks.settings import ConfigError, Duration, convert
from checks.tcp import TcpCheck, TcpOptions
from checks.updates import UpdatesCheck, UpdatesOptions, count_pending
from tests.helpers.cases import cases
from tests.helpers.measurements import find, names, wire_safe

PLUGIN_NAMES = {
    "plugin_status",
    "plugin_duration_seconds",
    "plugin_perf",
    "plugin_perf_warning",
    "plugin_perf_critical",
}
PROCESS_NAMES = {"process_count", "process_running", "process_rss_bytes", "process_cpu_seconds"}
TCP_NAMES = {"tcp_connect_success", "tcp_connect_seconds"}
HTTP_NAMES = {
    "http_up",
    "http_status_code",
    "http_response_seconds",
    "http_tls_cert_expiry_timestamp_seconds",
    "http_tls_cert_days_left",
}
UPDATES_NAMES = {
    "updates_pending",
    "updates_security_pending",
    "reboot_required",
    "reboot_required_packages",
}


def plugin(name: str) -> str:
    for directory in PLUGIN_DIRS:
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    pytest.skip(f"{name} not installed (Debian package: monitoring-plugins-basic)")


def script(tmp_path: Path, body: str, name: str = "check_fake") -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def run_plugin(*command: str, **options: Any) -> tuple[PluginCheck, list[Measurement]]:
    check = PluginCheck(PluginOptions(command=list(command), **options))
    return check, wire_safe(check.collect())


# --- plugin: real monitoring-plugins ----------------------------------------------------------


def test_check_disk_reports_used_bytes_of_root() -> None:
    check, out = run_plugin(
        plugin("check_disk"), "-w", "10%", "-c", "5%", "-p", "/", name="disk root"
    )
    st = os.statvfs("/")
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    size = st.f_blocks * st.f_frsize
    value = find(out, "plugin_perf", service="disk root", label="/")
    # check_disk prints B (2.3) or MB (older releases); either way the check reports bytes.
    assert value.unit == "bytes"
    assert value.value == pytest.approx(used, abs=max(0.01 * size, 64 * 1024**2))
    warning = find(out, "plugin_perf_warning", label="/").value
    critical = find(out, "plugin_perf_critical", label="/").value
    assert warning == pytest.approx(0.9 * size, rel=0.02)
    assert critical == pytest.approx(0.95 * size, rel=0.02)
    assert find(out, "plugin_status").value in {0, 1, 2}
    assert check.last_output is not None
    assert check.last_output.startswith("DISK ")
    assert "|" not in check.last_output


def test_check_load_reports_load_averages_and_thresholds() -> None:
    check, out = run_plugin(plugin("check_load"), "-w", "50,50,50", "-c", "100,100,100")
    with open("/proc/loadavg", encoding="utf-8") as proc:
        load1 = float(proc.read().split()[0])
    assert find(out, "plugin_status", service="plugin").value == 0
    assert find(out, "plugin_perf", label="load1").value == pytest.approx(load1, abs=1.0)
    assert {m.labels["label"] for m in out if m.name == "plugin_perf"} >= {
        "load1",
        "load5",
        "load15",
    }
    assert find(out, "plugin_perf_warning", label="load5").value == 50
    assert find(out, "plugin_perf_critical", label="load15").value == 100
    assert find(out, "plugin_perf", label="load1").unit == ""
    assert check.last_output is not None
    assert check.last_output.startswith("LOAD OK")


def test_check_procs_counts_processes() -> None:
    _, out = run_plugin(plugin("check_procs"), "-w", "1000", "-c", "2000")
    assert find(out, "plugin_perf", label="procs").value == pytest.approx(
        len(psutil.pids()), abs=50
    )
    assert find(out, "plugin_perf_warning", label="procs").value == 1000
    assert find(out, "plugin_perf_critical", label="procs").value == 2000


def test_command_as_a_string_and_a_bare_plugin_name() -> None:
    plugin("check_load")
    check = PluginCheck(
        PluginOptions(command="check_load -w '50,50,50' -c 100,100,100", service="load")
    )
    out = wire_safe(check.collect())
    assert find(out, "plugin_status", service="load").value == 0


# --- plugin: exit codes, output and timeouts --------------------------------------------------


def test_critical_plugin_is_a_measurement_not_a_failure(tmp_path: Path) -> None:
    command = script(
        tmp_path,
        "echo \"TIME CRITICAL - 1.5s | 'time'=1.5s;1;2;0; 'used'=80%;70;90\"\n"
        "echo 'long text line'\nexit 2",
    )
    check, out = run_plugin(command, service="fake")
    assert names(out) == PLUGIN_NAMES
    assert find(out, "plugin_status", service="fake").value == 2
    time_ = find(out, "plugin_perf", label="time")
    assert (time_.value, time_.unit) == (1.5, "seconds")
    assert find(out, "plugin_perf_warning", label="time").value == 1
    assert find(out, "plugin_perf_critical", label="time").value == 2
    used = find(out, "plugin_perf", label="used")
    assert used.value == pytest.approx(0.8)
    assert used.unit == "ratio"
    assert find(out, "plugin_perf_warning", label="used").value == pytest.approx(0.7)
    assert find(out, "plugin_perf_critical", label="used").value == pytest.approx(0.9)
    assert 0 < find(out, "plugin_duration_seconds").value < 5
    assert check.last_output == "TIME CRITICAL - 1.5s\nlong text line"


def unknown_plugin(*command: str, **options: Any) -> tuple[PluginCheck, CheckFailed]:
    """Run a plugin that ends UNKNOWN: the check fails, carrying its figures."""
    check = PluginCheck(PluginOptions(command=list(command), **options))
    with pytest.raises(CheckFailed, match="plugin reports UNKNOWN") as failed:
        check.collect()
    wire_safe(failed.value.measurements)
    return check, failed.value


@pytest.mark.parametrize(
    ("body", "how"),
    [
        pytest.param("echo 'WEIRD'; exit 7", "exited 7", id="exit 7"),
        pytest.param("echo 'GONE'; kill -9 $$", "killed by signal 9", id="killed"),
    ],
)
def test_exit_outside_0_to_3_is_unknown(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, body: str, how: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="checks.plugin"):
        _, failed = unknown_plugin(script(tmp_path, body), service="odd")
    assert find(failed.measurements, "plugin_status").value == 3
    assert how in caplog.text
    assert "odd" in caplog.text


def test_hanging_plugin_is_killed_at_the_timeout(tmp_path: Path) -> None:
    check = PluginCheck(PluginOptions(command=["sleep", "60"], timeout=Duration(1)))
    started = time.monotonic()
    with pytest.raises(CheckFailed, match="did not finish within 1s"):
        check.collect()
    assert time.monotonic() - started < 3
    assert check.last_output is None


def test_missing_plugin_fails_the_check() -> None:
    with pytest.raises(CheckFailed, match="not found"):
        PluginCheck(PluginOptions(command="check_nosuch_plugin_here")).collect()


def test_plugin_without_stdout_keeps_its_stderr(tmp_path: Path) -> None:
    check, failed = unknown_plugin(script(tmp_path, "echo 'cannot read config' >&2; exit 3"))
    assert find(failed.measurements, "plugin_status").value == 3
    assert check.last_output == "cannot read config"
    assert "cannot read config" in str(failed)
    assert names(failed.measurements) == {"plugin_status", "plugin_duration_seconds"}


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param({"type": "plugin"}, id="command missing"),
        pytest.param({"type": "plugin", "command": ""}, id="empty string"),
        pytest.param({"type": "plugin", "command": []}, id="empty list"),
        pytest.param({"type": "plugin", "command": "check_x 'unclosed"}, id="bad quoting"),
    ],
)
def test_bad_plugin_command_is_a_config_error(raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as error:
        convert(raw, PluginOptions)
    assert error.value.path == "command"


# --- plugin: perfdata parsing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "load1=0.210;5.000;10.000;0; load5=0.5;;",
            [PerfValue("load1", 0.21, "", 5.0, 10.0), PerfValue("load5", 0.5, "", None, None)],
            id="plain numbers, empty thresholds",
        ),
        pytest.param(
            "'/var/lib/my data'=12MB;100;200;0;1000 'it''s'=3c",
            [
                PerfValue("/var/lib/my data", 12 * 1024**2, "bytes", 100 * 1024**2, 200 * 1024**2),
                PerfValue("it's", 3, "count", None, None),
            ],
            id="quoted labels with spaces and a doubled quote",
        ),
        pytest.param(
            "rta=0.5ms;100;500 jitter=250us time=2s",
            [
                PerfValue("rta", 0.0005, "seconds", 0.1, 0.5),
                PerfValue("jitter", 0.00025, "seconds", None, None),
                PerfValue("time", 2, "seconds", None, None),
            ],
            id="times to seconds",
        ),
        pytest.param(
            "a=1KB b=1GB c=2TB d=5B e=1kB",
            [
                PerfValue("a", 1024, "bytes", None, None),
                PerfValue("b", 1024**3, "bytes", None, None),
                PerfValue("c", 2 * 1024**4, "bytes", None, None),
                PerfValue("d", 5, "bytes", None, None),
                PerfValue("e", 1024, "bytes", None, None),
            ],
            id="bytes are 1024-based",
        ),
        pytest.param(
            "x=U;1;2 y=4;10:20;@5:8 z=1;~:5;30:",
            [PerfValue("y", 4, "", None, None), PerfValue("z", 1, "", None, None)],
            id="U skipped, ranges not reported",
        ),
        pytest.param(
            "=3 garbage 'unclosed=4 ok=1e3 neg=-2.5",
            [PerfValue("ok", 1000, "", None, None), PerfValue("neg", -2.5, "", None, None)],
            id="unparseable items skipped",
        ),
        pytest.param(
            "temp=41.5C;60;80 rate=8Mb",
            [PerfValue("temp", 41.5, "C", 60, 80), PerfValue("rate", 8, "Mb", None, None)],
            id="unknown unit kept as is",
        ),
        pytest.param("", [], id="empty"),
    ],
)
def test_parse_perfdata(text: str, expected: list[PerfValue]) -> None:
    got = perf(text)
    assert [(p.label, p.unit) for p in got] == [(p.label, p.unit) for p in expected]
    for parsed, wanted in zip(got, expected, strict=True):
        numbers = (parsed.value, parsed.warning, parsed.critical)
        assert numbers == pytest.approx((wanted.value, wanted.warning, wanted.critical)), wanted


def test_perfdata_on_later_lines() -> None:
    output = parse_output(
        "DISK OK | /=1MB\nfirst long line\nsecond long line | /var=2MB\n/home=3MB;4;5\n"
    )
    assert output.text == "DISK OK\nfirst long line\nsecond long line"
    assert [(p.label, p.value) for p in output.perfdata] == [
        ("/", 1024**2),
        ("/var", 2 * 1024**2),
        ("/home", 3 * 1024**2),
    ]


def test_repeated_perf_label_keeps_the_first(tmp_path: Path) -> None:
    _, out = run_plugin(script(tmp_path, "echo 'OK | a=1 a=2'"))
    assert find(out, "plugin_perf", label="a").value == 1


# --- process ----------------------------------------------------------------------------------


def test_process_finds_this_test_by_its_command_line() -> None:
    me = psutil.Process()
    pattern = "^" + re.escape(" ".join(me.cmdline())) + "$"
    out = wire_safe(ProcessCheck(ProcessOptions(cmdline=pattern, process="pytest")).collect())
    assert names(out) == PROCESS_NAMES
    assert {m.labels["process"] for m in out} == {"pytest"}
    # Another run of the same command line may be going on: at least this one is there.
    assert find(out, "process_count").value >= 1
    assert find(out, "process_running").value == 1
    assert find(out, "process_rss_bytes").value >= me.memory_info().rss * 0.5
    times = me.cpu_times()
    assert find(out, "process_cpu_seconds").value >= (times.user + times.system) * 0.9
    assert find(out, "process_rss_bytes").unit == "bytes"


def test_process_by_exact_name_and_user() -> None:
    me = psutil.Process()
    out = ProcessCheck(ProcessOptions(match=me.name(), user=me.username())).collect()
    assert find(out, "process_count", process="process").value >= 1
    out = ProcessCheck(ProcessOptions(match=me.name(), user="no-such-user-here")).collect()
    assert find(out, "process_count").value == 0


def test_process_match_takes_the_full_name_and_the_15_character_comm(tmp_path: Path) -> None:
    """Linux keeps 15 characters of a process name (comm); `ps -o comm` and `pgrep -x` show
    those, psutil the full name. Both find the process; another truncation does not."""
    program = tmp_path / "runwatch-long-process-name"
    shutil.copy("/bin/sleep", program)
    with subprocess.Popen([str(program), "30"]) as child:
        try:
            comm = subprocess.run(
                ["ps", "-o", "comm=", "-p", str(child.pid)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            assert comm == "runwatch-long-p"  # what ps shows, and `pgrep -x` matches
            for match, count in [
                (program.name, 1),
                (comm, 1),
                ("runwatch-long-", 0),
                ("runwatch-long-process-nameX", 0),
            ]:
                check = ProcessCheck(ProcessOptions(match=match))
                assert find(check.collect(), "process_count").value == count, match
        finally:
            child.kill()


def test_process_match_of_a_short_name_is_exact() -> None:
    infos: list[dict[str, Any]] = [{"name": "postgres", "cmdline": ["postgres"]}]
    for match in ("postgre", "postgresX"):
        out = ProcessCheck(ProcessOptions(match=match), processes=lambda: infos).collect()
        assert find(out, "process_count").value == 0


def test_process_that_does_not_exist_counts_zero() -> None:
    out = wire_safe(
        ProcessCheck(ProcessOptions(match="no-such-process-rw", name="ghost")).collect()
    )
    assert {m.name: m.value for m in out} == dict.fromkeys(PROCESS_NAMES, 0.0)
    assert {m.labels["process"] for m in out} == {"ghost"}


def test_process_refused_figures_leave_the_count_alone() -> None:
    # The agent as a normal user is refused other users' memory and CPU (psutil gives None).
    class Times:
        user, system = 1.0, 0.5

    class Memory:
        rss = 4096

    infos: list[dict[str, Any]] = [
        {
            "name": "postgres",
            "cmdline": None,
            "username": None,
            "memory_info": None,
            "cpu_times": None,
        },
        {
            "name": "postgres",
            "cmdline": ["postgres", "-D", "/srv"],
            "username": "postgres",
            "memory_info": Memory(),
            "cpu_times": Times(),
        },
        {
            "name": "kworker/0:1",
            "cmdline": [],
            "username": "root",
            "memory_info": None,
            "cpu_times": None,
        },
    ]
    out = ProcessCheck(ProcessOptions(match="postgres"), processes=lambda: infos).collect()
    values = {m.name: m.value for m in out}
    assert values == {
        "process_count": 2,
        "process_running": 1,
        "process_rss_bytes": 4096,
        "process_cpu_seconds": 1.5,
    }
    # A kernel thread has no command line, so even an everything-regex leaves it out.
    out = ProcessCheck(ProcessOptions(cmdline=""), processes=lambda: infos).collect()
    assert find(out, "process_count").value == 1


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        pytest.param({"type": "process"}, "match", id="neither"),
        pytest.param({"type": "process", "match": "a", "cmdline": "b"}, "match", id="both"),
        pytest.param({"type": "process", "cmdline": "(unclosed"}, "cmdline", id="bad regex"),
    ],
)
def test_bad_process_options(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as error:
        convert(raw, ProcessOptions)
    assert error.value.path == path


# --- tcp --------------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def test_tcp_connects_to_a_listening_port(listener: socket.socket) -> None:
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    out = wire_safe(TcpCheck(TcpOptions(address=address)).collect())
    assert names(out) == TCP_NAMES
    assert find(out, "tcp_connect_success", target=address).value == 1
    assert 0 <= find(out, "tcp_connect_seconds").value < 1


def test_tcp_closed_port_is_success_zero_not_an_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = wire_safe(TcpCheck(TcpOptions(address=f"127.0.0.1:{port}", target="gone")).collect())
    assert [(m.name, m.value, m.labels) for m in out] == [
        ("tcp_connect_success", 0.0, {"target": "gone"})
    ]


BAD_TCP_ADDRESSES = {
    "no port": "localhost",
    "bare IPv6": "::1:80",
    "port 0": "host:0",
    "port too big": "host:70000",
    "no host": ":80",
}


@pytest.mark.parametrize("address", cases(BAD_TCP_ADDRESSES))
def test_bad_tcp_address(address: str) -> None:
    with pytest.raises(ConfigError) as error:
        convert({"type": "tcp", "address": address}, TcpOptions)
    assert error.value.path == "address"


def test_tcp_accepts_bracketed_ipv6() -> None:
    assert TcpOptions(address="[::1]:22").address == "[::1]:22"


# --- http -------------------------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = {"/": 200, "/error": 500, "/moved": 302}.get(self.path, 404)
        body = b"hello\n" if status == 200 else b""
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(context: ssl.SSLContext | None = None) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if context else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    yield from serve()


@pytest.fixture(scope="module")
def trustme() -> Any:
    return pytest.importorskip("trustme", reason="pip install trustme (the `test` extra)")


CERT_DAYS = 30


@pytest.fixture(scope="module")
def tls(trustme: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """An https server with a 30-day certificate for 127.0.0.1; yields (url, ca_file)."""
    ca = trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    cert = ca.issue_cert("127.0.0.1", not_after=now + datetime.timedelta(days=CERT_DAYS))
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    for url in serve(context):
        yield url, str(ca_file)


def tls_server(
    trustme: Any, ca_dir: Path, *identities: str, **validity: datetime.datetime
) -> Iterator[tuple[str, str]]:
    """Serve https with a certificate from a fresh CA; yield (url, that CA's PEM file)."""
    ca = trustme.CA()
    cert = ca.issue_cert(*identities, **validity)
    ca_file = ca_dir / "server-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    for url in serve(context):
        yield url, str(ca_file)


def test_http_200(http_url: str) -> None:
    out = wire_safe(HttpCheck(HttpOptions(url=http_url + "/")).collect())
    assert find(out, "http_up", url=http_url + "/").value == 1
    assert find(out, "http_status_code").value == 200
    assert 0 < find(out, "http_response_seconds").value < 2
    assert "http_tls_cert_days_left" not in names(out)


@pytest.mark.parametrize(
    ("path", "expect", "status", "up"),
    [
        pytest.param("/error", [], 500, 0, id="500 is down"),
        pytest.param("/error", [500], 500, 1, id="500 expected"),
        pytest.param("/moved", [], 302, 1, id="redirect not followed, 3xx is up"),
        pytest.param("/moved", [200], 302, 0, id="redirect where 200 expected"),
        pytest.param("/nothing", [], 404, 0, id="404"),
    ],
)
def test_http_status(http_url: str, path: str, expect: list[int], status: int, up: int) -> None:
    out = HttpCheck(HttpOptions(url=http_url + path, expect_status=expect)).collect()
    assert find(out, "http_up").value == up
    assert find(out, "http_status_code").value == status


def test_http_refused_is_down_with_no_other_series() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = wire_safe(HttpCheck(HttpOptions(url=f"http://127.0.0.1:{port}/")).collect())
    assert [(m.name, m.value) for m in out] == [("http_up", 0.0)]


def test_https_certificate_expiry(tls: tuple[str, str]) -> None:
    url, ca_file = tls
    out = wire_safe(HttpCheck(HttpOptions(url=url + "/", ca_file=ca_file)).collect())
    assert names(out) == HTTP_NAMES
    assert find(out, "http_up").value == 1
    assert find(out, "http_tls_cert_days_left").value == pytest.approx(CERT_DAYS, abs=1)
    expiry = find(out, "http_tls_cert_expiry_timestamp_seconds").value
    assert expiry == pytest.approx(time.time() + CERT_DAYS * 86400, abs=86400)


def test_https_unverified_still_reads_expiry(trustme: Any, tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    for url, _ in tls_server(trustme, tmp_path, "127.0.0.1"):  # its CA is trusted by nobody
        out = HttpCheck(HttpOptions(url=url + "/", verify_tls=False)).collect()
        assert find(out, "http_up").value == 1
        assert find(out, "http_tls_cert_days_left").value > 0


def days_ago(days: float) -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=days)


class TlsCase(NamedTuple):
    identity: str  # what the server's certificate is issued for
    trust_server_ca: bool  # trust the CA that signed it (else another one)
    reason: str  # what the warning must say
    validity: dict[str, datetime.datetime] | None = None  # not_before, not_after


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(TlsCase("127.0.0.1", False, "wrong CA"), id="wrong CA"),
        pytest.param(TlsCase("example.test", True, "hostname mismatch"), id="hostname mismatch"),
        pytest.param(
            TlsCase(
                "127.0.0.1",
                True,
                "certificate has expired",
                {"not_before": days_ago(10), "not_after": days_ago(1)},
            ),
            id="expired",
        ),
    ],
)
def test_https_verification_failure_is_down_keeps_expiry_and_says_why(
    trustme: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, case: TlsCase
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    for url, server_ca in tls_server(trustme, tmp_path, case.identity, **(case.validity or {})):
        # Trusting the server's own CA gets past "wrong CA" to the failure under test.
        ca_file = server_ca if case.trust_server_ca else str(other_ca)
        check = HttpCheck(HttpOptions(url=url + "/", ca_file=ca_file))
        with caplog.at_level(logging.WARNING, logger="checks.http"):
            out = wire_safe(check.collect())
        assert find(out, "http_up").value == 0
        # The certificate was presented: its expiry is measured, verified or not.
        assert names(out) == {
            "http_up",
            "http_tls_cert_days_left",
            "http_tls_cert_expiry_timestamp_seconds",
        }
        days_left = find(out, "http_tls_cert_days_left").value
        if case.validity:
            assert days_left == pytest.approx(-1, abs=0.01), "negative once expired"
        else:
            assert days_left > 300  # trustme's default validity
        assert case.reason in caplog.text
        assert check.last_output is not None and case.reason in check.last_output
        if case.reason == "wrong CA":
            assert "set ca_file" in check.last_output
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="checks.http"):
            check.collect()
        assert caplog.text == "", "the same TLS failure is warned about once"
        assert case.reason in (check.last_output or ""), "but said in every run's output"


def self_signed(tmp_path: Path, not_after: datetime.datetime) -> ssl.SSLContext:
    """A server context with a self-signed certificate for 127.0.0.1 (no CA at all)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - datetime.timedelta(days=30))
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


def test_https_self_signed_says_so_and_keeps_expiry(tmp_path: Path) -> None:
    pytest.importorskip("cryptography")
    not_after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=12)
    for url in serve(self_signed(tmp_path, not_after)):
        check = HttpCheck(HttpOptions(url=url + "/"))
        out = wire_safe(check.collect())
        assert find(out, "http_up").value == 0
        assert find(out, "http_tls_cert_expiry_timestamp_seconds").value == pytest.approx(
            not_after.timestamp(), abs=1
        )
        assert "self-signed certificate" in (check.last_output or "")


def test_der_not_after_reads_both_time_forms(trustme: Any) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from checks.http import der_not_after

    ca = trustme.CA()
    # RFC 5280: UTCTime up to 2049, GeneralizedTime from 2050.
    for year in (2049, 2051):
        not_after = datetime.datetime(year, 6, 7, 8, 9, 10, tzinfo=datetime.UTC)
        pem = ca.issue_cert("127.0.0.1", not_after=not_after).cert_chain_pems[0].bytes()
        der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
        assert der_not_after(der) == not_after.timestamp()
        with pytest.raises(ValueError):
            der_not_after(der[:200])


def test_expired_certificate_keeps_the_shipped_rule_critical(trustme: Any, tmp_path: Path) -> None:
    """At the moment of expiry the shipped tls_certificate_expiring rule still has its series."""
    from checks.settings import load_yaml
    from collector.config import RuleConfig
    from collector.evaluation.rules import Severity, classify, matches

    rule_file = msgspec.defstruct("RuleFile", [("rules", list[RuleConfig])])
    shipped = Path(__file__).resolve().parent.parent / "config" / "rules" / "services.yaml"
    rule = next(
        r for r in load_yaml(shipped, rule_file).rules if r.name == "tls_certificate_expiring"
    )
    validity = {"not_before": days_ago(10), "not_after": days_ago(0.001)}
    for url, ca_file in tls_server(trustme, tmp_path, "127.0.0.1", **validity):
        out = HttpCheck(HttpOptions(url=url + "/", ca_file=ca_file)).collect()
        series = [m for m in out if m.name == rule.metric and matches(rule, m.labels)]
        assert len(series) == 1
        assert classify(rule, series[0].value, Severity.OK) is Severity.CRITICAL


def test_http_unexpected_status_is_in_the_output(http_url: str) -> None:
    check = HttpCheck(HttpOptions(url=http_url + "/error"))
    check.collect()
    assert check.last_output == f"GET {http_url}/error answered 500"
    HttpCheck(HttpOptions(url=http_url + "/")).collect()


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        pytest.param({"url": "ftp://host/"}, "url", id="not http"),
        pytest.param({"url": "http:///path"}, "url", id="no host"),
        pytest.param({"url": "https://user:pw@host/"}, "url", id="credentials"),
        pytest.param({"url": "http://host:99999/"}, "url", id="bad port"),
        pytest.param({"url": "http://host/", "method": "get"}, "method", id="lower-case method"),
        pytest.param(
            {"url": "http://host/", "expect_status": [42]}, "expect_status", id="not a status"
        ),
    ],
)
def test_bad_http_options(raw: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as error:
        convert({"type": "http", **raw}, HttpOptions)
    assert error.value.path == path
    assert "pw" not in str(error.value)


# --- updates ----------------------------------------------------------------------------------

SIMULATION = """\
Reading package lists...
Inst base-files [12.4+deb12u11] (12.4+deb12u15 Debian:12.15/oldstable [amd64])
Inst libgcrypt20 [1.10.1-3] (1.10.1-3+deb12u1 Debian:12.15/oldstable, \
Debian-Security:12/oldstable-security [amd64])
Inst liblzma5 [5.4.1-1] (5.4.1-1+deb12u2 Debian-Security:12/oldstable-security [amd64]) []
Inst libssl3 [3.0.2-0ubuntu1.10] (3.0.2-0ubuntu1.12 Ubuntu:22.04/jammy-updates, \
Ubuntu:22.04/jammy-security [amd64])
Inst linux-image-6.1.0-99-amd64 (6.1.99-1 Debian-Security:12/stable-security [amd64])
Inst my-security-tool [1.0] (1.1 Debian:12.15/stable [amd64])
Conf base-files (12.4+deb12u15 Debian:12.15/oldstable [amd64])
"""


def test_count_pending_and_security() -> None:
    assert count_pending(SIMULATION) == (6, 4)
    assert count_pending("") == (0, 0)


def test_updates_real_apt_simulation(tmp_path: Path) -> None:
    if not any(os.access(os.path.join(d, "apt-get"), os.X_OK) for d in ("/usr/bin", "/bin")):
        pytest.skip("apt-get not installed (Debian package: apt)")
    flag = tmp_path / "reboot-required"
    out = wire_safe(UpdatesCheck(UpdatesOptions(reboot_required_file=str(flag))).collect())
    values = {m.name: m.value for m in out}
    assert set(values) == {"updates_pending", "updates_security_pending", "reboot_required"}
    assert values["updates_pending"] >= values["updates_security_pending"] >= 0
    assert values["updates_pending"] == int(values["updates_pending"])
    assert values["reboot_required"] == 0


def test_reboot_required_and_its_packages(tmp_path: Path) -> None:
    flag = tmp_path / "reboot-required"
    flag.write_text("*** System restart required ***\n")
    (tmp_path / "reboot-required.pkgs").write_text("linux-image-amd64\nlibc6\nlibc6\n\n")
    options = UpdatesOptions(reboot_required_file=str(flag), apt_get="/nonexistent/apt-get")
    out = wire_safe(UpdatesCheck(options).collect())
    assert {m.name: m.value for m in out} == {"reboot_required": 1, "reboot_required_packages": 2}


def test_without_apt_only_reboot_required(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    options = UpdatesOptions(
        reboot_required_file=str(tmp_path / "absent"), apt_get="no-such-apt-get"
    )
    with caplog.at_level(logging.INFO, logger="checks.updates"):
        out = UpdatesCheck(options).collect()
    assert [(m.name, m.value) for m in out] == [("reboot_required", 0.0)]
    assert "no-such-apt-get not found" in caplog.text


def test_failing_apt_keeps_reboot_required(tmp_path: Path) -> None:
    apt = script(tmp_path, "echo 'E: The package lists are broken' >&2; exit 100", "apt-get")
    options = UpdatesOptions(reboot_required_file=str(tmp_path / "absent"), apt_get=apt)
    with pytest.raises(CheckFailed, match="exited 100: E: The package lists") as failure:
        UpdatesCheck(options).collect()
    assert [m.name for m in failure.value.measurements] == ["reboot_required"]


def test_updates_declared_names_are_all_emitted(tmp_path: Path) -> None:
    apt = script(tmp_path, f"cat <<'EOF'\n{SIMULATION}EOF", "apt-get")
    flag = tmp_path / "reboot-required"
    flag.touch()
    (tmp_path / "reboot-required.pkgs").write_text("libc6\n")
    out = UpdatesCheck(UpdatesOptions(reboot_required_file=str(flag), apt_get=apt)).collect()
    assert names(out) == UPDATES_NAMES
    assert find(out, "updates_security_pending").value == 4


# --- registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "check_type"),
    [
        pytest.param({"type": "pg_archiver"}, "PgArchiverCheck", id="pg_archiver"),
        pytest.param({"type": "plugin", "command": "check_load"}, "PluginCheck", id="plugin"),
        pytest.param({"type": "process", "match": "sshd"}, "ProcessCheck", id="process"),
        pytest.param({"type": "tcp", "address": "127.0.0.1:22"}, "TcpCheck", id="tcp"),
        pytest.param({"type": "http", "url": "http://127.0.0.1/"}, "HttpCheck", id="http"),
        pytest.param({"type": "updates"}, "UpdatesCheck", id="updates"),
    ],
)
def test_registered_and_built_from_config(raw: dict[str, Any], check_type: str) -> None:
    options = convert({"name": "x", **raw}, AnyCheckOptions)
    check = build_check(options)
    assert type(check).__name__ == check_type
    assert check.name == raw["type"] == options.type


def test_slow_probes_default_to_a_long_interval() -> None:
    assert UpdatesOptions.default_interval == 3600
    assert UpdatesOptions.default_timeout == 300
    assert PgArchiverOptions.default_interval == 60
