"""Paged, filtered and sorted call lists from the store, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from collector.app import CollectorService
from collector.incidents.calls import Call
from collector.store.call_search import CallSearch
from collector.store.protocols import Store

SEVERITIES = ["WARNING", "CRITICAL", "UNKNOWN", "STALE"]


def a_call(n: int, **fields: Any) -> Call:
    host = fields.pop("host", f"web{n % 7:02d}")
    rule = fields.pop("rule", "filesystem_full" if n % 2 else "load_high")
    status = fields.pop("status", "open" if n % 3 else "resolved")
    values: dict[str, Any] = {
        "id": 0,
        "fingerprint": f"fp-{n}",
        "host": host,
        "rule": rule,
        "labels": {"mountpoint": "/"},
        "group": "systems-administration" if n % 4 else "computer-operations",
        "assign": "Systems",
        "severity": SEVERITIES[n % 4],
        "priority": "P3",
        "status": status,
        "summary": f"{rule} on {host} (call {n})",
        "description": "",
        "first_seen": 1000.0 + n,
        "opened_at": 1000.0 + n,
        "updated_at": 2000.0 - n,
        "resolved_at": 3000.0 + n if status == "resolved" else None,
    }
    values.update(fields)
    return Call(**values)


@pytest.fixture
def store(make_service: Callable[..., CollectorService]) -> Store:
    store = make_service([]).store
    with store.transaction():
        for n in range(1, 121):
            store.insert_call(a_call(n))
        store.insert_call(a_call(200, host="db01", summary="Backup 50%_done failed", status="open"))
    return store


def ids(store: Store, **search: Any) -> list[int]:
    return [call.id for call in store.search_calls(CallSearch(**search)).calls]


def test_pages_cover_every_call_once_newest_first(store: Store) -> None:
    seen: list[int] = []
    offset = 0
    while True:
        page = store.search_calls(CallSearch(offset=offset, limit=25))
        assert page.total == 121
        if not page.calls:
            break
        seen += [c.id for c in page.calls]
        offset += 25
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 121
    past = store.search_calls(CallSearch(offset=500, limit=25))
    assert (past.calls, past.total) == ([], 121)


def test_filters_by_status_group_host_rule_and_severity(store: Store) -> None:
    every = [c for c in store.search_calls(CallSearch(limit=1000)).calls]
    for search, keep in (
        ({"status": "open"}, lambda c: c.status == "open"),
        ({"status": "resolved"}, lambda c: c.status == "resolved"),
        ({"groups": ("computer-operations",)}, lambda c: c.group == "computer-operations"),
        ({"groups": ()}, lambda c: False),
        ({"host": "web03"}, lambda c: c.host == "web03"),
        ({"host": "web0*"}, lambda c: c.host.startswith("web0")),
        ({"host": "WEB03"}, lambda c: False),  # a name is exact
        ({"rule": "load*"}, lambda c: c.rule == "load_high"),
        (
            {"severity": "CRITICAL", "status": "open"},
            lambda c: c.severity == "CRITICAL" and c.status == "open",
        ),
    ):
        page = store.search_calls(CallSearch(limit=1000, **search))
        want = [c.id for c in every if keep(c)]
        assert [c.id for c in page.calls] == want, search
        assert page.total == len(want), search


def test_text_is_found_anywhere_in_any_case_and_wildcards_are_literal(store: Store) -> None:
    assert len(ids(store, text="LOAD_high web05", limit=1000)) == len(
        [n for n in range(1, 121) if n % 2 == 0 and n % 7 == 5]
    )
    (backup,) = ids(store, text="50%_done")
    assert store.search_calls(CallSearch(text="50%_d")).total == 1
    assert store.search_calls(CallSearch(text="5%0")).total == 0, "% matches only itself"
    assert store.search_calls(CallSearch(text="on_web")).total == 0, "_ matches only itself"
    assert ids(store, text="db01") == [backup]


def test_sorts_are_the_stores_work(store: Store) -> None:
    calls = store.search_calls(CallSearch(limit=1000)).calls
    by_id = {c.id: c for c in calls}
    rank = {"CRITICAL": 4, "STALE": 3, "UNKNOWN": 2, "WARNING": 1}
    worst = ids(store, sort="severity", limit=1000)
    assert worst == sorted(by_id, key=lambda i: (rank[by_id[i].severity], i), reverse=True)
    assert ids(store, sort="host", descending=False, limit=1000) == sorted(
        by_id, key=lambda i: (by_id[i].host, i)
    )
    updated = ids(store, sort="updated", descending=False, limit=1000)
    assert updated == sorted(by_id, key=lambda i: by_id[i].updated_at)
    resolved = ids(store, sort="resolved", limit=1000)
    done = [i for i in resolved if by_id[i].resolved_at is not None]
    assert resolved[: len(done)] == done, "open calls (no resolved time) go last"
    assert done == sorted(done, key=lambda i: by_id[i].resolved_at or 0, reverse=True)
    second = ids(store, sort="severity", offset=10, limit=10)
    assert second == worst[10:20]


def test_a_bad_sort_or_page_is_refused() -> None:
    with pytest.raises(ValueError, match="sort"):
        CallSearch(sort="summary; DROP TABLE calls")
    with pytest.raises(ValueError, match="page"):
        CallSearch(limit=0)
    with pytest.raises(ValueError, match="page"):
        CallSearch(offset=-1)


def test_the_store_uses_an_index_for_one_hosts_open_calls(store: Store) -> None:
    """The query plan of a host's page reads the host index, not the whole register."""
    from collector.store.call_search import search_sql

    clause, args, order = search_sql(CallSearch(host="web03", status="open"), "LIKE")
    query = f"SELECT id FROM calls {clause} {order} LIMIT 10"
    db: Any = store._db  # type: ignore[attr-defined]
    if type(store).__name__ == "SQLiteStore":
        plan = " ".join(str(row) for row in db.execute("EXPLAIN QUERY PLAN " + query, args))
        assert "calls_by_host" in plan, plan
    else:
        with db.transaction():  # a table this small is read whole unless told otherwise
            db.execute("SET LOCAL enable_seqscan = off")
            rows = db.execute("EXPLAIN " + query.replace("?", "%s"), args).fetchall()
        plan = " ".join(row[0] for row in rows)
        assert "calls_by_host" in plan, plan


def test_the_audit_log_is_paged_and_searched(store: Store) -> None:
    from collector.store.records import AuditEntry

    with store.transaction():
        for n in range(1, 61):
            actor = "alice" if n % 2 else "bob"
            store.add_audit(
                AuditEntry(0, 1000.0 + n, actor, "call.acknowledge", f"call {n}", "", "console")
            )
        store.add_audit(
            AuditEntry(0, 2000.0, "carol", "silence.add", "silence 1", "50%_off", "api")
        )
    entries, total = store.audit_page("", 0, 25)
    assert total == 61 and len(entries) == 25 and entries[0].actor == "carol"
    assert [e.at for e in entries] == sorted((e.at for e in entries), reverse=True)
    rest, _ = store.audit_page("", 50, 25)
    assert len(rest) == 11
    bobs, total = store.audit_page("BOB ACKNOWLEDGE", 0, 100)
    assert total == 30 and {e.actor for e in bobs} == {"bob"}
    sevens, _ = store.audit_page("call 7", 0, 100)
    assert {e.target for e in sevens} == {f"call {n}" for n in (7, 17, 27, 37, 47, 57)}
    assert store.audit_page("50%_off", 0, 100)[1] == 1
    assert store.audit_page("5%", 0, 100)[1] == 0
