"""How pytest-xdist spreads the tests over its workers: whole files, and the help desk files as one.

A test file runs in one worker, in file order, as it does without xdist: its module-scoped
fixtures (a PostgreSQL cluster, a restic repository, a Prometheus) are made once, and a test may
build on the ones before it. The real help desks keep their data in one system-wide database
each, which their session fixtures provision, so every file that uses Redmine or Request Tracker
runs in the same worker: two workers never start them at once.

`--dist loadgroup` with `xdist_group` marks would say the same, but with pytest 9.2 and xdist 3.8
it silently stops grouping (pytest-dev/pytest-xdist#1386), so the groups are made here, from the
test ids, by the controller.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

from xdist.scheduler import LoadFileScheduling

# A test file that names one of these fixtures runs in the help desks' worker.
HELPDESK_FIXTURES = re.compile(r"\b(redmine_server|rt_server)\b")
HELPDESKS = "help desks (Redmine, Request Tracker)"


@functools.cache
def uses_a_helpdesk(path: Path) -> bool:
    """Whether the test file at `path` asks for a real help desk."""
    try:
        return HELPDESK_FIXTURES.search(path.read_text(encoding="utf-8")) is not None
    except OSError:
        return False


def scope_of(nodeid: str, root: Path) -> str:
    """The unit of work a test belongs to: its file, or the help desks' unit."""
    path = nodeid.split("::", 1)[0]
    return HELPDESKS if uses_a_helpdesk(root / path) else path


class FileScheduling(LoadFileScheduling):
    """`--dist loadfile`, with every test file that uses a help desk in one unit."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self._root = Path(config.rootpath)

    def _split_scope(self, nodeid: str) -> str:
        return scope_of(nodeid, self._root)
