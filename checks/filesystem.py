"""Filesystem check: space and inodes of each mounted filesystem, as df(1) reports them."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Protocol

import msgspec
import psutil

from checks.base import CheckBase, CheckOptions, Clock, Glob, reading
from checks.schema import Measurement

_log = logging.getLogger(__name__)

# Kernel and container pseudo filesystems: they hold no user data, and several of them report
# sizes that mean nothing (proc, sysfs) or follow RAM (tmpfs).
# fmt: off
PSEUDO_FILESYSTEM_TYPES = (
    "tmpfs", "devtmpfs", "overlay", "squashfs", "proc", "sysfs", "cgroup", "cgroup2", "devpts",
    "mqueue", "debugfs", "tracefs", "securityfs", "pstore", "bpf", "autofs", "fusectl",
    "configfs", "hugetlbfs", "nsfs", "ramfs", "binfmt_misc", "rpc_pipefs", "efivarfs",
    "fuse.lxcfs", "nfsd", "selinuxfs",
)
# fmt: on
SYSTEM_MOUNTPOINTS = ("/proc/*", "/sys/*", "/dev/*", "/run/*", "/var/lib/docker/*", "/snap/*")


class FilesystemOptions(CheckOptions, tag="filesystem", frozen=True):
    """Which filesystems to report. A non-empty include list replaces its exclude list."""

    exclude_types: list[Glob] = msgspec.field(default_factory=lambda: list(PSEUDO_FILESYSTEM_TYPES))
    include_types: list[Glob] = msgspec.field(default_factory=list)
    exclude_mountpoints: list[Glob] = msgspec.field(  # fnmatch globs
        default_factory=lambda: list(SYSTEM_MOUNTPOINTS)
    )
    include_mountpoints: list[Glob] = msgspec.field(default_factory=list)  # fnmatch globs


class Partition(Protocol):
    """One mount table entry, as psutil.disk_partitions returns it."""

    @property
    def device(self) -> str: ...
    @property
    def mountpoint(self) -> str: ...
    @property
    def fstype(self) -> str: ...


def _all_partitions() -> Sequence[Partition]:
    return psutil.disk_partitions(all=True)


def _statvfs(path: str) -> os.statvfs_result:
    return os.statvfs(path)


def _matches(path: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(path, pattern) for pattern in patterns)


class FilesystemCheck(CheckBase[FilesystemOptions]):
    """Report size, free and used space, and inodes, for each selected filesystem."""

    def __init__(
        self,
        options: FilesystemOptions,
        *,
        partitions: Callable[[], Sequence[Partition]] = _all_partitions,
        statvfs: Callable[[str], os.statvfs_result] = _statvfs,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(options, clock=clock)
        self._partitions = partitions
        self._statvfs = statvfs
        self._include_types = frozenset(options.include_types)
        self._exclude_types = frozenset(options.exclude_types)
        self._unreadable: set[str] = set()  # warned about once, until readable again

    def selects(self, partition: Partition) -> bool:
        """Return whether the options select this mount."""
        if self._include_types:
            if partition.fstype not in self._include_types:
                return False
        elif partition.fstype in self._exclude_types:
            return False
        if self._options.include_mountpoints:
            return _matches(partition.mountpoint, self._options.include_mountpoints)
        return not _matches(partition.mountpoint, self._options.exclude_mountpoints)

    def collect(self) -> list[Measurement]:
        """Return space and inode figures for every selected, readable filesystem."""
        with reading("list mounted filesystems", "/proc/self/mounts"):
            partitions = self._partitions()
        # A later mount on the same mountpoint hides the earlier one, and statvfs sees the top.
        visible = {partition.mountpoint: partition for partition in partitions}
        self._unreadable.intersection_update(visible)
        now = self._clock()
        out: list[Measurement] = []
        for partition in visible.values():
            if self.selects(partition):
                out.extend(self._measure(partition, now))
        return out

    def _measure(self, partition: Partition, now: float) -> list[Measurement]:
        mountpoint = partition.mountpoint
        try:
            st = self._statvfs(mountpoint)
        except OSError as exc:
            self._warn_unreadable(partition, exc)
            return []
        self._unreadable.discard(mountpoint)
        # As df(1): "free" is what unprivileged users may still write (f_bavail), and the used
        # share leaves out the blocks reserved for root, so it reaches 1.0 when users are full.
        size = st.f_blocks * st.f_frsize
        free = st.f_bavail * st.f_frsize
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        figures: list[tuple[str, float, str]] = [
            ("fs_size_bytes", size, "bytes"),
            ("fs_free_bytes", free, "bytes"),
            ("fs_used_bytes", used, "bytes"),
            ("fs_inodes", st.f_files, ""),
            ("fs_inodes_free", st.f_favail, ""),
        ]
        if used + free > 0:
            figures.append(("fs_used_ratio", used / (used + free), "ratio"))
        if st.f_files > 0:
            figures.append(
                ("fs_inodes_used_ratio", (st.f_files - st.f_ffree) / st.f_files, "ratio")
            )
        labels = {"mountpoint": mountpoint, "device": partition.device, "fstype": partition.fstype}
        return self._measurements(figures, now, labels)

    def _warn_unreadable(self, partition: Partition, exc: OSError) -> None:
        # A mount that stays unreadable would log every cycle; say it once until it recovers.
        level = logging.DEBUG if partition.mountpoint in self._unreadable else logging.WARNING
        self._unreadable.add(partition.mountpoint)
        _log.log(
            level,
            "filesystem check: skipping %s (%s on %s): %s; add it to "
            "exclude_mountpoints, or give the agent access to it",
            partition.mountpoint,
            partition.fstype,
            partition.device,
            exc.strerror or exc,
        )
