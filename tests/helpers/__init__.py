"""Shared test helpers: a clock tests move by hand, reports built in one line, a collector
config, the test PostgreSQL and external tools. Fixtures stay in tests/conftest.py."""

from tests.helpers.clock import FakeClock
from tests.helpers.config import (
    FS_RULE,
    GROUPS,
    TIMED_GROUPS,
    collector_config,
    write_collector_yaml,
)
from tests.helpers.postgres import PG_DSN, pg_unavailable_reason
from tests.helpers.reports import Reporter
from tests.helpers.tools import RUNWATCH, tool

__all__ = [
    "FS_RULE",
    "GROUPS",
    "PG_DSN",
    "RUNWATCH",
    "TIMED_GROUPS",
    "FakeClock",
    "Reporter",
    "collector_config",
    "pg_unavailable_reason",
    "tool",
    "write_collector_yaml",
]
