"""Files check: how many files a glob matches, their total size, and how fresh they are.

For what a job leaves behind without reporting on itself: database dumps, rsync targets,
exports. The newest file's age says whether the job still runs; the oldest says whether
anything cleans up after it.
"""

from __future__ import annotations

import glob
import logging
import os
import stat
from pathlib import Path
from typing import Annotated, NamedTuple

import msgspec

from checks.base import CheckBase, CheckFailed, CheckOptions
from checks.schema import Measurement

_log = logging.getLogger(__name__)

# A file path or glob in check options; `**` spans directories.
PathGlob = Annotated[str, msgspec.Meta(min_length=1)]


class FileStat(NamedTuple):
    """One regular file a glob matched: its path, size in bytes and mtime."""

    path: str
    size_bytes: int
    mtime_seconds: float
    mtime_ns: int


def _glob_base(pattern: str) -> Path:
    """Return the directory a glob starts from: its leading parts that hold no wildcard."""
    parts = Path(pattern).parts
    for index, part in enumerate(parts):
        if glob.has_magic(part):
            return Path(*parts[:index]) if index else Path(".")
    return Path(pattern).parent


def matching_paths(pattern: str) -> list[str]:
    """Return the paths a glob matches (any type; `**` spans directories), sorted.

    Raises CheckFailed when the directory the glob starts from exists but cannot be read: the
    glob would silently match nothing, and "no files" must not be reported for "no access".
    """
    base = _glob_base(pattern)
    if base.is_dir() and not os.access(base, os.R_OK | os.X_OK):
        raise CheckFailed(f"cannot read directory {base}; give the agent read access to it")
    return sorted(glob.glob(pattern, recursive=True))


def regular_files(pattern: str, *, what: str) -> list[FileStat]:
    """Return the regular files a glob matches (following symlinks), with size and mtime.

    A file that vanishes between listing and stat (a job renaming it) is left out quietly; one
    that cannot be read is left out with a warning. `what` names the check in that warning.
    """
    out: list[FileStat] = []
    for path in matching_paths(pattern):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            _log.warning(
                "%s check: skipping %s: %s; give the agent access to it, or narrow `path`",
                what,
                path,
                exc.strerror or exc,
            )
            continue
        if stat.S_ISREG(st.st_mode):
            out.append(FileStat(path, st.st_size, st.st_mtime, st.st_mtime_ns))
    return out


class FilesOptions(CheckOptions, tag="files", frozen=True):
    """Which files to report: a glob, and the `files` label value (default: the glob)."""

    path: PathGlob
    label: str | None = None


class FilesCheck(CheckBase[FilesOptions]):
    """Report count, total size and newest/oldest age of the regular files a glob matches."""

    def collect(self) -> list[Measurement]:
        """Return the count and total size, and ages when any file matches."""
        files = regular_files(self._options.path, what="files")
        now = self._clock()
        figures: list[tuple[str, float, str]] = [
            ("files_count", len(files), ""),
            ("files_bytes", sum(f.size_bytes for f in files), "bytes"),
        ]
        if files:
            newest = max(files, key=lambda f: f.mtime_seconds)
            oldest = min(files, key=lambda f: f.mtime_seconds)
            figures += [
                ("files_newest_age_seconds", now - newest.mtime_seconds, "seconds"),
                ("files_oldest_age_seconds", now - oldest.mtime_seconds, "seconds"),
                ("files_newest_size_bytes", newest.size_bytes, "bytes"),
            ]
        labels = {"files": self._options.label or self._options.path}
        return self._measurements(figures, now, labels)
