"""System checks against the real host, compared with free(1), df(1) and /proc."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import msgspec
import psutil
import pytest

from checks.base import Check, CheckOptions
from checks.cpu import CpuCheck, CpuOptions
from checks.diskio import DiskioCheck, DiskioOptions
from checks.filesystem import FilesystemCheck, FilesystemOptions
from checks.load import LoadCheck, LoadOptions
from checks.memory import MemoryCheck, MemoryOptions
from checks.network import NetworkCheck, NetworkOptions
from checks.processes import ProcessesCheck, ProcessesOptions
from checks.registry import CHECK_TYPES, AnyCheckOptions, build_check
from checks.schema import Measurement
from checks.uptime import UptimeCheck, UptimeOptions
from tests.helpers.cases import cases
from tests.helpers.measurements import find, names

MiB = 1024 * 1024


def stepping_clock(start: float = 1000.0, step: float = 1.0) -> Callable[[], float]:
    """Return a clock that moves `step` seconds forward on every call."""
    ticks = itertools.count()
    return lambda: start + step * next(ticks)


def root_fstype() -> str:
    """Return the type of the filesystem mounted on /, as the kernel's mount table has it."""
    fstype = ""
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[1] == "/":
                fstype = fields[2]  # the last mount on / is the visible one
    assert fstype, "/ is not in /proc/self/mounts"
    return fstype


def root_only() -> FilesystemOptions:
    # Whatever / is here (ext4 on a VM, overlay in a container), bring exactly it in.
    return FilesystemOptions(include_types=[root_fstype()], include_mountpoints=["/"])


def wait_for_cpu_tick() -> None:
    """Let the kernel's CPU time counters move on (they advance in clock ticks, 10 ms each)."""
    start = sum(psutil.cpu_times())
    deadline = time.monotonic() + 2
    while sum(psutil.cpu_times()) == start and time.monotonic() < deadline:
        time.sleep(0.01)


def collect_twice(check: Check) -> list[Measurement]:
    """Collect once to prime the rate state, then again, and return the second collect."""
    check.collect()
    if isinstance(check, CpuCheck):
        wait_for_cpu_tick()
    return check.collect()


def run(*argv: str) -> list[str]:
    """Run a system tool in the C locale and return its output lines."""
    env = {**os.environ, "LC_ALL": "C"}
    done = subprocess.run(argv, check=True, capture_output=True, text=True, env=env)
    return done.stdout.splitlines()


CPU_MODES = {"user", "system", "iowait", "idle", "nice", "irq", "softirq", "steal"}
FS_NAMES = {
    "fs_size_bytes",
    "fs_free_bytes",
    "fs_used_bytes",
    "fs_used_ratio",
    "fs_inodes",
    "fs_inodes_free",
    "fs_inodes_used_ratio",
}
DISK_NAMES = {
    "disk_read_bytes_per_second",
    "disk_written_bytes_per_second",
    "disk_reads_per_second",
    "disk_writes_per_second",
    "disk_busy_ratio",
}
NET_NAMES = {
    "net_received_bytes_per_second",
    "net_sent_bytes_per_second",
    "net_receive_errors_per_second",
    "net_transmit_errors_per_second",
    "net_receive_drops_per_second",
    "net_transmit_drops_per_second",
}


def memory_names() -> set[str]:
    declared = {
        "memory_total_bytes",
        "memory_available_bytes",
        "memory_used_bytes",
        "memory_used_ratio",
        "swap_total_bytes",
        "swap_used_bytes",
    }
    # swap_used_ratio is declared only for hosts that have swap.
    return declared | ({"swap_used_ratio"} if psutil.swap_memory().total > 0 else set())


# --- every declared measurement is emitted ------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    cases(
        {
            "cpu": (lambda: CpuCheck(CpuOptions()), {"cpu_utilization_ratio", "cpu_mode_ratio"}),
            "load": (
                lambda: LoadCheck(LoadOptions()),
                {"load1", "load5", "load15", "load1_per_core", "load5_per_core", "load15_per_core"},
            ),
            "memory": (lambda: MemoryCheck(MemoryOptions()), None),
            "filesystem: /": (lambda: FilesystemCheck(root_only()), FS_NAMES),
            "network: loopback included": (
                lambda: NetworkCheck(
                    NetworkOptions(exclude_interfaces=[]), monotonic=stepping_clock()
                ),
                NET_NAMES,
            ),
            "processes": (lambda: ProcessesCheck(ProcessesOptions()), {"processes"}),
            "uptime": (
                lambda: UptimeCheck(UptimeOptions()),
                {"uptime_seconds", "boot_time_seconds"},
            ),
        }
    ),
)
def test_every_declared_measurement_is_emitted(
    make: Callable[[], Check], expected: set[str] | None
) -> None:
    assert names(collect_twice(make())) == (memory_names() if expected is None else expected)


def test_cpu_reports_every_mode_and_shares_add_up() -> None:
    out = collect_twice(CpuCheck(CpuOptions()))
    modes = {m.labels["mode"]: m.value for m in out if m.name == "cpu_mode_ratio"}
    assert set(modes) == CPU_MODES
    assert all(0 <= share <= 1 for share in modes.values())
    assert sum(modes.values()) == pytest.approx(1, abs=1e-9)  # guest is inside user and nice
    busy = find(out, "cpu_utilization_ratio").value
    assert busy == pytest.approx(1 - modes["idle"] - modes["iowait"], abs=1e-9)


def test_diskio_reports_every_declared_measurement_when_a_disk_is_visible() -> None:
    out = collect_twice(DiskioCheck(DiskioOptions(), monotonic=stepping_clock()))
    if not out:
        pytest.skip("no block device outside exclude_devices is visible here (a container?)")
    for device in {m.labels["device"] for m in out}:
        assert names([m for m in out if m.labels["device"] == device]) == DISK_NAMES, device


def test_network_reports_loopback_when_not_excluded() -> None:
    check = NetworkCheck(NetworkOptions(exclude_interfaces=[]), monotonic=stepping_clock())
    out = collect_twice(check)
    assert names([m for m in out if m.labels["interface"] == "lo"]) == NET_NAMES


def test_network_excludes_loopback_by_default() -> None:
    out = collect_twice(NetworkCheck(NetworkOptions(), monotonic=stepping_clock()))
    assert "lo" not in {m.labels["interface"] for m in out}


# --- figures agree with the system's own tools -------------------------------------------------


def test_memory_matches_free() -> None:
    out = MemoryCheck(MemoryOptions()).collect()
    mem = next(line for line in run("free", "-b") if line.startswith("Mem:")).split()
    total, available = int(mem[1]), int(mem[6])
    assert find(out, "memory_total_bytes").value == total
    assert find(out, "memory_available_bytes").value == pytest.approx(available, rel=0.05)
    used = find(out, "memory_used_bytes").value
    assert used == find(out, "memory_total_bytes").value - find(out, "memory_available_bytes").value
    assert find(out, "memory_used_ratio").value == pytest.approx(used / total)


def test_filesystem_root_matches_df() -> None:
    out = FilesystemCheck(root_only()).collect()
    size, avail, pcent = run("df", "-B1", "--output=size,avail,pcent", "/")[1].split()
    tolerance = max(0.01 * int(size), 64 * MiB)
    assert find(out, "fs_size_bytes", mountpoint="/").value == pytest.approx(
        int(size), abs=tolerance
    )
    assert find(out, "fs_free_bytes", mountpoint="/").value == pytest.approx(
        int(avail), abs=tolerance
    )
    # df rounds Use% up to a whole percent.
    ratio = find(out, "fs_used_ratio", mountpoint="/").value
    assert ratio == pytest.approx(int(pcent.rstrip("%")) / 100, abs=0.01)


def test_filesystem_root_inodes_match_df() -> None:
    # GNU df rejects `-i` together with `--output`; asking for the inode field says it anyway.
    itotal = run("df", "--output=itotal", "/")[1].strip()
    if itotal in {"-", "0"}:
        pytest.skip(f"df reports no inode total for / ({itotal!r}): the filesystem has none")
    out = FilesystemCheck(root_only()).collect()
    assert find(out, "fs_inodes", mountpoint="/").value == int(itotal)
    # Other tests (another xdist worker) create and delete files meanwhile: compare with a
    # statvfs taken while nothing changed, before and after the check's own reading.
    for _ in range(20):
        before = os.statvfs("/").f_favail
        free = FilesystemCheck(root_only()).collect()
        if os.statvfs("/").f_favail == before:
            break
    assert find(free, "fs_inodes_free", mountpoint="/").value == before
    assert 0 <= find(out, "fs_inodes_used_ratio", mountpoint="/").value <= 1


def test_load_matches_proc_loadavg() -> None:
    out = LoadCheck(LoadOptions()).collect()
    with open("/proc/loadavg", encoding="utf-8") as proc:
        load1 = float(proc.read().split()[0])
    assert find(out, "load1").value == pytest.approx(load1, abs=0.5)
    cores = os.cpu_count()
    assert cores
    for window in ("load1", "load5", "load15"):
        per_core = find(out, f"{window}_per_core").value
        assert per_core == pytest.approx(find(out, window).value / cores)


def test_processes_counts_this_process() -> None:
    out = ProcessesCheck(ProcessesOptions()).collect()
    assert find(out, "processes").value >= 1
    assert os.getpid() in psutil.pids()


def test_uptime_is_now_minus_boot_time() -> None:
    out = UptimeCheck(UptimeOptions(), clock=lambda: psutil.boot_time() + 90.0).collect()
    assert find(out, "uptime_seconds").value == pytest.approx(90.0)
    assert find(out, "boot_time_seconds").value == pytest.approx(psutil.boot_time())
    assert all(m.unit == "seconds" for m in out)


# --- counters become rates only from two sane samples ------------------------------------------


class Nic(NamedTuple):
    bytes_recv: int = 0
    bytes_sent: int = 0
    errin: int = 0
    errout: int = 0
    dropin: int = 0
    dropout: int = 0


class Disk(NamedTuple):
    read_bytes: int = 0
    write_bytes: int = 0
    read_count: int = 0
    write_count: int = 0
    busy_time: int = 0  # milliseconds


class Script:
    """Hand out prepared counter samples one collect at a time."""

    def __init__(self, *samples: Any) -> None:
        self._samples: Iterator[Any] = iter(samples)

    def __call__(self) -> Any:
        return next(self._samples)


def test_network_first_sample_yields_no_rate_and_the_next_does() -> None:
    script = Script({"eth0": Nic(bytes_recv=1000)}, {"eth0": Nic(bytes_recv=3000, errin=4)})
    check = NetworkCheck(NetworkOptions(), counters=script, monotonic=stepping_clock(step=2.0))
    assert check.collect() == []
    out = check.collect()
    assert find(out, "net_received_bytes_per_second", interface="eth0").value == 1000.0
    assert find(out, "net_receive_errors_per_second", interface="eth0").value == 2.0
    assert find(out, "net_sent_bytes_per_second", interface="eth0").unit == "bytes/s"


def test_network_counter_that_goes_backwards_yields_no_rate_until_next_sample() -> None:
    script = Script(
        {"eth0": Nic(bytes_recv=5000, bytes_sent=100)},
        {"eth0": Nic(bytes_recv=10, bytes_sent=300)},  # receive counter reset
        {"eth0": Nic(bytes_recv=1010, bytes_sent=500)},
    )
    check = NetworkCheck(NetworkOptions(), counters=script, monotonic=stepping_clock())
    check.collect()
    out = check.collect()
    assert "net_received_bytes_per_second" not in names(out)
    assert find(out, "net_sent_bytes_per_second").value == 200.0
    out = check.collect()
    assert find(out, "net_received_bytes_per_second").value == 1000.0


def test_network_interface_that_returns_starts_over() -> None:
    script = Script({"eth0": Nic(), "wg0": Nic()}, {"eth0": Nic()}, {"eth0": Nic(), "wg0": Nic()})
    check = NetworkCheck(NetworkOptions(), counters=script, monotonic=stepping_clock())
    check.collect()
    check.collect()
    out = check.collect()
    assert {m.labels["interface"] for m in out} == {"eth0"}


@pytest.mark.parametrize(
    ("counters", "expected"),
    cases(
        {
            "psutil returns None": (None, []),
            "psutil returns no disks": ({}, []),
        }
    ),
)
def test_diskio_without_disks_is_empty_not_an_error(counters: Any, expected: list[Any]) -> None:
    check = DiskioCheck(DiskioOptions(), counters=lambda: counters)
    assert check.collect() == expected
    assert check.collect() == expected


def test_diskio_rates_busy_ratio_and_exclusions() -> None:
    script = Script(
        {"vda": Disk(), "loop0": Disk()},
        {"vda": Disk(read_bytes=4096, write_count=10, busy_time=250), "loop0": Disk(read_bytes=99)},
        {
            "vda": Disk(read_bytes=0, write_count=20, busy_time=5000),  # reads reset, busy > 100%
            "loop0": Disk(read_bytes=99),
        },
    )
    check = DiskioCheck(DiskioOptions(), counters=script, monotonic=stepping_clock())
    assert check.collect() == []
    out = check.collect()
    assert {m.labels["device"] for m in out} == {"vda"}
    assert find(out, "disk_read_bytes_per_second").value == 4096.0
    assert find(out, "disk_writes_per_second").value == 10.0
    assert find(out, "disk_busy_ratio").value == 0.25
    out = check.collect()
    assert "disk_read_bytes_per_second" not in names(out)
    assert find(out, "disk_busy_ratio").value == 1.0


def test_cpu_first_sample_backwards_total_and_shares() -> None:
    script = Script(
        {"user": 10.0, "system": 5.0, "idle": 80.0, "iowait": 5.0, "guest": 1.0},
        {"user": 16.0, "system": 7.0, "idle": 90.0, "iowait": 7.0, "guest": 4.0},
        {"user": 1.0, "system": 1.0, "idle": 1.0, "iowait": 1.0, "guest": 0.0},  # went back
    )
    check = CpuCheck(CpuOptions(), cpu_times=script)
    assert check.collect() == []
    out = check.collect()
    assert find(out, "cpu_utilization_ratio").value == pytest.approx(0.4)
    assert find(out, "cpu_mode_ratio", mode="user").value == pytest.approx(0.3)  # guest not added
    assert find(out, "cpu_mode_ratio", mode="iowait").value == pytest.approx(0.1)
    assert check.collect() == []


# --- filesystem selection -----------------------------------------------------------------------


def mounts_of(options: FilesystemOptions) -> set[str]:
    return {m.labels["mountpoint"] for m in FilesystemCheck(options).collect()}


def test_filesystem_defaults_leave_out_pseudo_and_system_mounts() -> None:
    options = FilesystemOptions()
    out = FilesystemCheck(options).collect()
    assert not {m.labels["fstype"] for m in out} & set(options.exclude_types)
    for mountpoint in {m.labels["mountpoint"] for m in out}:
        assert not mountpoint.startswith(("/proc/", "/sys/", "/dev/", "/run/")), mountpoint


@pytest.mark.parametrize(
    ("options", "wanted", "unwanted"),
    cases(
        {
            "include type of /": (
                FilesystemOptions(include_types=[root_fstype()]),
                {"/"},
                {"/proc", "/sys"},
            ),
            "exclude mountpoint /": (
                FilesystemOptions(include_types=[root_fstype()], exclude_mountpoints=["/"]),
                set(),
                {"/"},
            ),
            "include mountpoint globs": (
                FilesystemOptions(
                    include_types=[root_fstype(), "proc", "sysfs"],
                    include_mountpoints=["/", "/pro?"],
                ),
                {"/", "/proc"},
                {"/sys"},
            ),
            "include type brings an excluded type back": (
                FilesystemOptions(include_types=["proc"], exclude_mountpoints=[]),
                {"/proc"},
                {"/"},
            ),
            "exclude type of /": (
                FilesystemOptions(exclude_types=[root_fstype()], include_mountpoints=["/"]),
                set(),
                {"/"},
            ),
        }
    ),
)
def test_filesystem_selection(
    options: FilesystemOptions, wanted: set[str], unwanted: set[str]
) -> None:
    found = mounts_of(options)
    assert wanted <= found
    assert not unwanted & found


class Mount(NamedTuple):
    device: str
    mountpoint: str
    fstype: str
    opts: str = "rw"


def test_filesystem_skips_an_unreadable_mount_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    missing = "/nonexistent/runwatch-test-mount"
    partitions = [Mount("/dev/fake", missing, "ext4"), Mount("/dev/root", "/", "ext4")]
    check = FilesystemCheck(FilesystemOptions(), partitions=lambda: partitions)
    with caplog.at_level(logging.WARNING, logger="checks.filesystem"):
        out = check.collect()
        check.collect()
    assert {m.labels["mountpoint"] for m in out} == {"/"}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # said once, not every cycle
    assert missing in warnings[0].getMessage()
    assert "exclude_mountpoints" in warnings[0].getMessage()


def test_filesystem_reports_the_top_mount_of_a_stacked_mountpoint() -> None:
    partitions = [Mount("rootfs", "/", "rootfs"), Mount("/dev/root", "/", "ext4")]
    out = FilesystemCheck(FilesystemOptions(), partitions=lambda: partitions).collect()
    assert {(m.labels["device"], m.labels["fstype"]) for m in out} == {("/dev/root", "ext4")}
    assert len(out) == len(names(out))


# --- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "typ"),
    cases(
        {
            "unknown key": ({"type": "filesystem", "bogus": 1}, FilesystemOptions),
            "string for a list": (
                {"type": "filesystem", "exclude_types": "tmpfs"},
                FilesystemOptions,
            ),
            "empty glob": ({"type": "filesystem", "include_mountpoints": [""]}, FilesystemOptions),
            "number": ({"type": "network", "exclude_interfaces": [1]}, NetworkOptions),
            "unknown key via union": ({"type": "cpu", "bogus": 1}, AnyCheckOptions),
            "unknown type": ({"type": "nosuch"}, AnyCheckOptions),
        }
    ),
)
def test_bad_options_are_rejected(raw: dict[str, Any], typ: Any) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(raw, typ)


# The system checks need no options; other types are built and collected in their own tests.
SYSTEM_TYPES = ["cpu", "load", "memory", "filesystem", "diskio", "network", "processes", "uptime"]


def test_union_decodes_each_type_by_its_tag() -> None:
    raw = [{"type": name} for name in SYSTEM_TYPES]
    decoded = msgspec.convert(raw, list[AnyCheckOptions])
    assert [type(options) for options in decoded] == [CHECK_TYPES[n][0] for n in SYSTEM_TYPES]


# --- schema and registry ------------------------------------------------------------------------


def all_measurements() -> list[Measurement]:
    checks: list[Check] = [
        CpuCheck(CpuOptions(name="cpu main")),
        LoadCheck(LoadOptions()),
        MemoryCheck(MemoryOptions()),
        FilesystemCheck(FilesystemOptions()),
        FilesystemCheck(root_only()),
        DiskioCheck(DiskioOptions(exclude_devices=[]), monotonic=stepping_clock()),
        NetworkCheck(NetworkOptions(exclude_interfaces=[]), monotonic=stepping_clock()),
        ProcessesCheck(ProcessesOptions()),
        UptimeCheck(UptimeOptions()),
    ]
    return [m for check in checks for m in collect_twice(check)]


def test_measurements_pass_schema_validation() -> None:
    measurements = all_measurements()
    assert measurements
    for m in measurements:
        assert msgspec.json.decode(msgspec.json.encode(m), type=Measurement) == m
        assert not m.name.endswith("_total")
        assert m.unit in {"ratio", "bytes", "bytes/s", "seconds", "1/s", ""}, m
    # A named instance reports under its name, not under its type.
    assert {m.check for m in measurements if m.name.startswith("cpu_")} == {"cpu main"}


@pytest.mark.parametrize("type_name", SYSTEM_TYPES)
def test_registry_builds_and_collects_every_type(type_name: str) -> None:
    options_class, _ = CHECK_TYPES[type_name]
    options: CheckOptions = msgspec.convert({"type": type_name}, AnyCheckOptions)
    assert type(options) is options_class
    check = build_check(options)
    assert check.name == type_name
    for m in check.collect() + check.collect():
        assert m.check == type_name
