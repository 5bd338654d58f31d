"""The console's lists: hosts and calls searched, sorted and paged by the server, and the live
pages' refreshes (the main part of the page only)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from collector.api.application import create_app
from collector.api.console.paging import Paging
from collector.app import CollectorService
from collector.auth import add_token
from tests.helpers import FS_RULE, FakeClock, Reporter

FAST_FS = {**FS_RULE, "for": "0s"}
LIVE = {"X-Runwatch-Live": "1"}


def shown(first: int, last: int, total: int, noun: str) -> str:
    """The pager's count, as shown(1, 50, 120, "hosts") (an en dash)."""
    return f"{first}\u2013{last} of {total} {noun}"


def report(
    service: CollectorService, clock: FakeClock, host: str, used: float, **labels: str
) -> None:
    sent = Reporter(host, clock).report({"fs_used_ratio": used})
    service.ingest(host, msgspec.structs.replace(sent, labels=labels))


@pytest.fixture
def console(
    make_service: Callable[..., CollectorService], clock: FakeClock
) -> Iterator[tuple[TestClient[Any], CollectorService]]:
    """A console over 120 hosts: db00..db29 (role=db, CRITICAL), web030..web119 (role=web;
    every tenth WARNING)."""
    service = make_service([FAST_FS])
    token = add_token(service.config.operator_tokens_file, "alice")
    for n in range(30):
        report(service, clock, f"db{n:02d}", 0.97, role="db", site="fra" if n % 2 else "ams")
    for n in range(30, 120):
        report(service, clock, f"web{n:03d}", 0.9 if n % 10 == 0 else 0.5, role="web")
    with TestClient(create_app(service)) as client:
        answer = client.post("/login", data={"next": "/", "token": token}, follow_redirects=False)
        assert answer.status_code == 303
        yield client, service


def hosts_on(page: str) -> list[str]:
    table = page[page.index('id="hosts"') :]
    table = table[: table.index("</table>")]
    return re.findall(r'<tr><td><a href="/hosts/[^"]+">([^<]+)</a>', table)


def test_overview_pages_hosts_worst_first_with_a_count(console: Any) -> None:
    client, _service = console
    page = client.get("/").text
    first = hosts_on(page)
    assert len(first) == 50
    assert first[:30] == [f"db{n:02d}" for n in range(30)], "CRITICAL first, then by name"
    assert first[30:39] == [f"web{n:03d}" for n in range(30, 120, 10)], "then WARNING"
    assert shown(1, 50, 120, "hosts") in page
    assert 'aria-current="page"' in page and 'href="/?page=3#hosts"' in page
    last = client.get("/?page=3").text
    assert hosts_on(last) == sorted(f"web{n:03d}" for n in range(30, 120) if n % 10)[-20:]
    assert shown(101, 120, 120, "hosts") in last
    for huge in ("99999999999999999999999", "-3", "x"):
        for path in ("/", "/calls", "/audit", "/hosts/db01"):
            assert client.get(f"{path}?page={huge}").status_code == 200, (path, huge)
    beyond = client.get("/?page=99").text
    assert hosts_on(beyond) == hosts_on(last), "a page past the end shows the last one"
    assert "130" not in re.findall(r'class="count">(\d+)', page)
    counts = {state: n for n, state in re.findall(r'class="count">([\d,]+)</span> (\w+)', page)}
    assert counts == {"CRITICAL": "30", "STALE": "0", "UNKNOWN": "0", "WARNING": "9", "OK": "81"}


def test_overview_sorts_by_name_and_pages_by_size(console: Any) -> None:
    client, _service = console
    page = client.get("/?sort=host&dir=desc&per=25&page=2").text
    names = sorted([f"db{n:02d}" for n in range(30)] + [f"web{n:03d}" for n in range(30, 120)])
    assert hosts_on(page) == list(reversed(names))[25:50]
    # Links keep the sort and the size; the header of the sorted column turns it round.
    assert 'href="/?sort=host&amp;dir=desc&amp;per=25&amp;page=3#hosts"' in page
    assert 'aria-sort="descending"><a href="/?sort=host&amp;dir=asc&amp;per=25#hosts"' in page
    odd = client.get("/?sort=nonsense&per=7").text
    assert len(hosts_on(odd)) == 50, "an unknown sort or size falls back"


def test_hosts_are_found_by_name_and_label(console: Any) -> None:
    client, _service = console
    assert hosts_on(client.get("/?q=WEB11").text) == [f"web{n}" for n in range(110, 120)]
    assert hosts_on(client.get("/?q=role%3Ddb+site%3Dfra&sort=host").text) == [
        f"db{n:02d}" for n in range(1, 30, 2)
    ]
    assert hosts_on(client.get("/?q=web*0&state=WARNING&sort=host").text) == [
        f"web{n:03d}" for n in range(30, 120, 10)
    ]
    none = client.get("/?q=role%3Dmail").text
    assert hosts_on(none) == [] and "No host matches." in none and "No hosts" in none
    page = client.get("/?q=role%3Ddb").text
    assert 'value="role=db"' in page and shown(1, 30, 30, "hosts") in page
    assert 'href="/?q=role%3Ddb&amp;sort=host&amp;dir=asc#hosts"' in page, "sorting keeps q"


def test_open_problems_are_limited_per_group_with_a_link_to_all(console: Any) -> None:
    client, _service = console
    page = client.get("/").text
    problems = page[page.index('id="live-problems"') :]
    problems = problems[: problems.index("</section>")]
    assert "39 open" in problems
    assert len(re.findall(r'<li><a href="/calls/\d+">', problems)) == 10
    assert (
        "/calls?state=open&amp;group=systems-administration&amp;sort=severity&amp;dir=desc"
        in problems
    )
    assert "All 39 open calls of systems-administration" in problems
    badge = r'<li><a href="/calls/\d+">#\d+</a> <span class="badge state-(\w+)'
    listed = re.findall(badge, problems)
    assert listed == ["critical"] * 10, "worst first"


def call_ids(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr data-call="(\d+)">', page)]


def test_calls_are_searched_sorted_and_paged(console: Any) -> None:
    client, service = console
    every = {c.id: c for c in service.calls(None, None, 1000)}
    assert len(every) == 39
    first = client.get("/calls?per=25").text
    assert call_ids(first) == sorted(every, reverse=True)[:25]
    assert shown(1, 25, 39, "calls") in first
    assert 'href="/calls?state=open&amp;per=25&amp;page=2#calls"' in first
    second = client.get("/calls?per=25&page=2").text
    assert call_ids(second) == sorted(every, reverse=True)[25:]
    by_host = client.get("/calls?host=web*0&sort=host&dir=asc").text
    assert [every[i].host for i in call_ids(by_host)] == [f"web{n:03d}" for n in range(30, 120, 10)]
    text = client.get("/calls?q=DB1").text
    assert sorted(every[i].host for i in call_ids(text)) == [f"db{n}" for n in range(10, 20)]
    worst = client.get("/calls?sort=severity&dir=desc").text
    assert [every[i].severity for i in call_ids(worst)] == ["CRITICAL"] * 30 + ["WARNING"] * 9
    assert call_ids(client.get("/calls?severity=WARNING").text) == sorted(
        (i for i, c in every.items() if c.severity == "WARNING"), reverse=True
    )
    assert call_ids(client.get("/calls?rule=filesystem_full&state=resolved").text) == []
    assert len(call_ids(client.get("/calls?rule=filesystem*&state=all").text)) == 39
    assert "No calls match" in client.get("/calls?q=nothing-like-this").text


def test_host_page_pages_its_calls(console: Any) -> None:
    client, _service = console
    page = client.get("/hosts/db03").text
    assert "1 call<" in page and 'id="live-host-calls" data-live' in page
    assert client.get("/hosts/db03?page=5&sort=severity").status_code == 200


def test_live_refresh_sends_the_main_part_only(console: Any) -> None:
    client, _service = console
    for path in ("/", "/calls", "/hosts/db01"):
        full = client.get(path)
        live = client.get(path, headers=LIVE)
        assert live.status_code == 200 and live.headers["vary"] == "X-Runwatch-Live"
        assert "<header>" in full.text and "<header>" not in live.text, path
        assert 'id="live-updated"' in live.text and "data-live" in live.text, path
        regions = re.findall(r'id="(live-[\w-]+)" data-live', full.text)
        assert regions and regions == re.findall(r'id="(live-[\w-]+)" data-live', live.text)
        assert live.headers["content-security-policy"].startswith("default-src 'self'")
    assert 'id="live-status" data-every="5"' in client.get("/").text
    page = client.get("/").text
    for name, kind in (("live.js", "text/javascript"), ("lists.css", "text/css")):
        assert f'"/static/{name}"' in page
        assert client.get(f"/static/{name}").headers["content-type"].startswith(kind)


def test_a_refresh_without_a_session_is_told_so(console: Any) -> None:
    client, _service = console
    client.cookies.clear()
    refused = client.get("/calls", headers=LIVE, follow_redirects=False)
    assert refused.status_code == 401 and "session has ended" in refused.text
    plain = client.get("/calls", follow_redirects=False)
    assert plain.status_code == 303 and plain.headers["location"].startswith("/login")


def test_the_audit_log_is_paged_and_searched(console: Any) -> None:
    client, service = console
    for n in range(60):
        service.audit("alice" if n % 2 else "bob", "token.enrol", f"host h{n}", via="api")
    page = client.get("/audit?per=25").text
    assert shown(1, 25, 60, "entries") in page and 'href="/audit?per=25&amp;page=3#audit"' in page
    searched = client.get("/audit?q=bob").text
    assert shown(1, 30, 30, "entries") in searched and ">alice<" not in searched
    assert "No entry matches." in client.get("/audit?q=nobody").text


def test_paging_links() -> None:
    paging = Paging.from_query("/calls", {"page": "7", "per": "25"}, {"q": "disk"}, ["id"], "id")
    paging.settle(1000)
    assert (paging.pages, paging.offset, paging.first, paging.last) == (40, 150, 151, 175)
    assert paging.window() == [1, None, 5, 6, 7, 8, 9, None, 40]
    assert paging.page_url(1) == "/calls?q=disk&per=25"
    assert paging.settle(10) and paging.page == 1, "past the end: the last page"
    empty = Paging.from_query("/", {}, {}, ["host"], "host")
    empty.settle(0)
    assert (empty.pages, empty.first, empty.last, empty.window()) == (1, 0, 0, [1])
