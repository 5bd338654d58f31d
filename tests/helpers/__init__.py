"""Shared test helpers: a clock tests move by hand, reports built in one line, a collector
config, the test PostgreSQL and external tools. Fixtures stay in tests/conftest.py."""

from tests.helpers.clock import FakeClock
from tests.helpers.config import FS_RULE, GROUPS, collector_config
from tests.helpers.postgres import PG_DSN, pg_unavailable_reason
from tests.helpers.reports import Reporter
from tests.helpers.tools import RUNWATCH, tool

__all__ = [
    "FS_RULE",
    "GROUPS",
    "PG_DSN",
    "RUNWATCH",
    "FakeClock",
    "Reporter",
    "collector_config",
    "pg_unavailable_reason",
    "tool",
]
