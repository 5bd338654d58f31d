"""The config keys of issue 8 are validated at load with key paths, and a store written by the
previous schema is migrated in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from checks.settings import ConfigError
from collector.config import collector_config_from_dict
from collector.evaluation.rules import Severity
from collector.store.records import Silence
from collector.store.sqlite import SCHEMA, SCHEMA_VERSION, SQLiteStore
from tests.helpers.cases import cases

BASE: dict[str, Any] = {
    "sinks": {"helpdesk": {"type": "builtin"}},
    "groups": {"ops": {"sink": "helpdesk", "assign": "Operations"}},
    "rules": [
        {"name": "fs", "metric": "fs_used_ratio", "owner": "ops", "warning": 0.8, "critical": 0.9},
        {
            "name": "fills",
            "metric": "fs_free_bytes",
            "owner": "ops",
            "forecast": {"warning": "3d", "critical": "1d"},
        },
    ],
}


@pytest.mark.parametrize(
    ("extra", "path", "words"),
    cases(
        {
            "flap changes": ({"flapping": {"changes": 0}}, "flapping -> changes", ">= 1"),
            "host group without a selector": (
                {"host_groups": [{"name": "db", "thresholds": {}}]},
                "host_groups -> 1",
                "needs `hosts`",
            ),
            "unknown rule": (
                {
                    "host_groups": [
                        {"name": "db", "hosts": ["db*"], "thresholds": {"nope": {"warning": 1}}}
                    ]
                },
                "host_groups -> 1 -> thresholds -> nope",
                "unknown rule",
            ),
            "override past critical": (
                {
                    "host_groups": [
                        {"name": "db", "hosts": ["db*"], "thresholds": {"fs": {"warning": 0.95}}}
                    ]
                },
                "host_groups -> 1 -> thresholds -> fs -> warning",
                "below critical",
            ),
            "time for a plain rule": (
                {
                    "host_groups": [
                        {"name": "db", "hosts": ["db*"], "thresholds": {"fs": {"warning": "2d"}}}
                    ]
                },
                "host_groups -> 1 -> thresholds -> fs -> warning",
                "expected a number",
            ),
            "not a time for a forecast": (
                {
                    "host_groups": [
                        {
                            "name": "db",
                            "hosts": ["db*"],
                            "thresholds": {"fills": {"critical": "soon"}},
                        }
                    ]
                },
                "host_groups -> 1 -> thresholds -> fills -> critical",
                "duration",
            ),
            "bad weekday": (
                {
                    "maintenance": [
                        {
                            "name": "w",
                            "weekly": [{"days": ["funday"], "start": "02:00", "duration": "1h"}],
                        }
                    ]
                },
                "maintenance -> 1 -> weekly -> 1 -> days -> 1",
                "",
            ),
            "bad start": (
                {
                    "maintenance": [
                        {
                            "name": "w",
                            "weekly": [{"days": ["sun"], "start": "25:00", "duration": "1h"}],
                        }
                    ]
                },
                "maintenance -> 1 -> weekly -> 1 -> start",
                "",
            ),
            "bad time zone": (
                {
                    "maintenance": [
                        {
                            "name": "w",
                            "timezone": "Mars/Olympus",
                            "weekly": [{"days": ["sun"], "start": "02:00", "duration": "1h"}],
                        }
                    ]
                },
                "maintenance -> 1 -> timezone",
                "unknown time zone",
            ),
            "too long": (
                {
                    "maintenance": [
                        {
                            "name": "w",
                            "weekly": [{"days": ["sun"], "start": "02:00", "duration": "8d"}],
                        }
                    ]
                },
                "maintenance -> 1 -> weekly -> 1 -> duration",
                "at most 1w",
            ),
            "forecast beyond retention": (
                {"history": {"retention": "1h"}},
                "rules -> 2 -> forecast -> over",
                "history -> retention",
            ),
        }
    ),
)
def test_bad_evaluation_config_names_the_key(extra: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        collector_config_from_dict({**BASE, **extra})
    assert caught.value.path == path
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("rule", "path"),
    cases(
        {
            "critical after warning": (
                {"forecast": {"warning": "1d", "critical": "3d"}},
                "rules -> 3 -> forecast",
            ),
            "no time": ({"forecast": {}}, "rules -> 3 -> forecast"),
            "plain threshold on a forecast": (
                {"forecast": {"warning": "1d"}, "warning": 5},
                "rules -> 3 -> warning",
            ),
        }
    ),
)
def test_bad_forecast_rule(rule: dict[str, Any], path: str) -> None:
    bad = {"name": "x", "metric": "fs_free_bytes", "owner": "ops", **rule}
    with pytest.raises(ConfigError) as caught:
        collector_config_from_dict({**BASE, "rules": [*BASE["rules"], bad]})
    assert caught.value.path.startswith(path)


def test_a_forecast_rule_reads_as_time_thresholds() -> None:
    config = collector_config_from_dict(BASE)
    fills = config.rules[1]
    assert (fills.direction, fills.warning, fills.critical) == ("below", 3 * 86400, 86400)


def test_a_store_of_the_first_schema_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "runwatch.db"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)
    old.execute("INSERT INTO hosts VALUES ('web01', 1, 2, 60, 'v1', 'b', 7)")
    old.execute("INSERT INTO rule_states VALUES ('fs', 'web01', '{}', 2, 0.97, 1, NULL, 0, 1, '')")
    old.execute("PRAGMA user_version=1")
    old.commit()
    old.close()

    store = SQLiteStore(path)
    try:
        (host,) = store.load_hosts()
        assert (host.host, host.last_seq, host.labels) == ("web01", 7, {})
        (record,) = store.load_rule_states()
        assert record.state.severity is Severity.CRITICAL
        assert (record.state.changes, record.state.flapping) == ((), False)
        with store.transaction():
            silence_id = store.add_silence(Silence(0, "web*", "*", 10, 20, "why", "op", 5))
        assert [s.id for s in store.list_silences(15)] == [silence_id]
        assert store.list_silences(25) == []
        assert store.list_audit(10) == [] and store.state_changes(0, 1e12) == []
        assert not store.session_live("0" * 64, 0)
        assert store.evaluation_spans() == []  # step 5: when the collector evaluated
    finally:
        store.close()
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    check.close()
    SQLiteStore(path).close()  # opening a current store again changes nothing
