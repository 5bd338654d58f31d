"""Private files and directories: what the collector and the agent keep is for their user only.

The collector's data dir holds the store, token hashes, console users and the console's session
secret; the agent's state dir holds its spool. Both are created 0700 and their files 0600,
whatever the umask (which can narrow a mode, never widen it). Ones that already exist are left
as they are, with a warning, since an operator may have opened them on purpose.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def make_private_dir(path: Path) -> None:
    """Create `path` (and missing parents) with mode 0700; an existing one is left alone."""
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)


def create_private_file(path: Path) -> None:
    """Create `path` empty with mode 0600 unless it exists (SQLite's -wal and -shm copy it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def warn_if_exposed(paths: Iterable[Path], log: logging.Logger) -> list[Path]:
    """Log one warning for each path that its group or other users may use; return them."""
    exposed = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            continue  # not made yet: it will be made private
        mode = stat.S_IMODE(info.st_mode)
        if not mode & 0o077:
            continue
        wanted = PRIVATE_DIR_MODE if stat.S_ISDIR(info.st_mode) else PRIVATE_FILE_MODE
        log.warning(
            "%s is open to other users (mode %04o); restrict it with: chmod %o %s",
            path,
            mode,
            wanted,
            path,
        )
        exposed.append(path)
    return exposed
