"""Check registry: every check type by name, the union its options decode into, and a builder."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, TypeAlias, Union

from checks import (
    archive,
    borg,
    cpu,
    diskio,
    files,
    filesystem,
    http,
    load,
    logrotate,
    marker,
    memory,
    network,
    pgarchive,
    plugin,
    process,
    processes,
    restic,
    statusfile,
    tcp,
    textfile,
    updates,
    uptime,
)
from checks.base import Check, CheckOptions

CheckClass: TypeAlias = Callable[..., Check]

# Add a check type here, one line each; everything below is derived from this list.
_CHECKS: Final[list[tuple[type[CheckOptions], CheckClass]]] = [
    (cpu.CpuOptions, cpu.CpuCheck),
    (load.LoadOptions, load.LoadCheck),
    (memory.MemoryOptions, memory.MemoryCheck),
    (filesystem.FilesystemOptions, filesystem.FilesystemCheck),
    (diskio.DiskioOptions, diskio.DiskioCheck),
    (network.NetworkOptions, network.NetworkCheck),
    (processes.ProcessesOptions, processes.ProcessesCheck),
    (uptime.UptimeOptions, uptime.UptimeCheck),
    (restic.ResticOptions, restic.ResticCheck),
    (borg.BorgOptions, borg.BorgCheck),
    (textfile.TextfileOptions, textfile.TextfileCheck),
    (statusfile.StatusfileOptions, statusfile.StatusfileCheck),
    (marker.MarkerOptions, marker.MarkerCheck),
    (files.FilesOptions, files.FilesCheck),
    (archive.ArchiveOptions, archive.ArchiveCheck),
    (logrotate.LogrotateOptions, logrotate.LogrotateCheck),
    (pgarchive.PgArchiverOptions, pgarchive.PgArchiverCheck),
    (plugin.PluginOptions, plugin.PluginCheck),
    (process.ProcessOptions, process.ProcessCheck),
    (tcp.TcpOptions, tcp.TcpCheck),
    (http.HttpOptions, http.HttpCheck),
    (updates.UpdatesOptions, updates.UpdatesCheck),
]

CHECK_TYPES: Final[dict[str, tuple[type[CheckOptions], CheckClass]]] = {
    str(options.__struct_config__.tag): (options, check) for options, check in _CHECKS
}

if TYPE_CHECKING:
    # A type checker cannot follow a Union built from a list; to it, every member is a CheckOptions.
    AnyCheckOptions: TypeAlias = CheckOptions
else:
    # msgspec decodes this tagged union by its "type" field, and rejects unknown types and keys.
    AnyCheckOptions = Union[tuple(options for options, _ in _CHECKS)]  # noqa: UP007


def build_check(options: CheckOptions, **collaborators: Any) -> Check:
    """Build the check that `options` configures.

    Each collaborator goes to the check's constructor only if the constructor takes a keyword of
    that name: `state_dir`, where a probe keeps its cache, and `timeout`, the runner's budget
    for one run (CheckOptions.timeout_seconds), which checks that run processes or requests
    take.
    """
    try:
        _, check_class = CHECK_TYPES[options.type]
    except KeyError:
        raise ValueError(f"no check of type {options.type!r} is registered") from None
    accepted = inspect.signature(check_class).parameters
    return check_class(options, **{k: v for k, v in collaborators.items() if k in accepted})
