"""How values and times read on a console page: relative times with the absolute one on hover,
values in their units, escaped like any other text."""

from __future__ import annotations

import jinja2

from collector.api.console.filters import FILTERS

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


def render(source: str, **context: object) -> str:
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters.update(FILTERS)
    return env.from_string(source).render(now=NOW, **context)


def test_a_time_reads_relative_with_the_absolute_time_on_hover() -> None:
    assert render("{{ t|when }}", t=NOW - 185) == (
        '<time datetime="2027-01-15T07:56:55Z" title="2027-01-15 07:56:55 UTC">3 min ago</time>'
    )
    assert ">in 2 h</time>" in render("{{ t|when }}", t=NOW + 7200)
    assert render("{{ t|when }}", t=None) == "-"
    assert render("{{ t|when }}", t=float("nan")) == "-"


def test_values_read_in_their_units_and_timestamps_as_times() -> None:
    assert render("{{ v|value('ratio', 'fs_used_ratio') }}", v=0.8510566923851052) == "85.1%"
    assert render("{{ v|value('', 'fs_free_bytes') }}", v=2.5276e10) == "23.5 GiB"
    assert render("{{ v|value('', 'x') }}", v=None) == "no value"
    stamp = render("{{ v|value('', 'backup_last_success_timestamp_seconds') }}", v=NOW - 7200)
    assert stamp.startswith('<time datetime="2027-01-15T06:00:00Z"') and ">2 h ago<" in stamp
    assert render("{{ v|value('<b>', '') }}", v=3) == "3 &lt;b&gt;", "a unit is text, escaped"


def test_since_says_the_first_report_or_when_it_changed() -> None:
    first = {"since": NOW - 86400, "since_first_report": True}
    assert render("{{ r|since }}", r=first).endswith(">since the first report</time>")
    changed = {"since": NOW - 600, "since_first_report": False}
    assert render("{{ r|since }}", r=changed).endswith(">10 min ago</time>")
    assert render("{{ r|since }}", r={"since": None}) == "since the first report"
    assert "1970" not in render("{{ r|since }}", r={"since": 0.0})


def test_durations_and_seconds_ago() -> None:
    assert render("{{ s|duration }}", s=60.0) == "1 min"
    assert render("{{ s|ago }}", s=185) == "3 min ago"
