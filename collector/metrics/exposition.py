"""The fleet's health rendered from the in-memory view at scrape time, fast."""

from __future__ import annotations

import asyncio
import functools
import json
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from collector.config import STALE_RULE, CollectorConfig
from collector.evaluation.maintenance import MaintenanceCalendar
from collector.evaluation.rules import Severity
from collector.incidents.manager import CallCounters
from collector.store.protocols import Store
from collector.view.fleet import HOST_RANK, Fleet, SeriesKey, problem_severity
from runwatch import __version__

if TYPE_CHECKING:
    from collector.services.watch import ServiceWatch

PREFIX = "runwatch_"

# How long calls take, in seconds: from a minute to a week.
CALL_BUCKETS = (10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# What the outbox delivers; a sink's requests are those and `status` (two-way sync).
OUTBOX_OPERATIONS = ("open", "comment", "update", "resolve", "reopen")
SINK_OPERATIONS = (*OUTBOX_OPERATIONS, "status")
# What an outbox delivery attempt comes to (collector/incidents/outbox.py).
DELIVERY_RESULTS = ("ok", "retry", "dead")
REJECT_REASONS = ("unauthorized", "forbidden", "malformed", "invalid", "too_large", "retired")
# The names a family's samples take, in the text format, OpenMetrics and client libraries: a
# measurement may use none of them for a family of the collector's own.
FAMILY_SUFFIXES = ("_bucket", "_count", "_sum", "_created", "_total", "_info", "_gcount", "_gsum")
# Hosts rendered between two turns of the event loop by a scrape (55 series: ~80 µs a host).
WARM_SLICE_HOSTS = 100
# Rule states and hosts written between two turns of the event loop by a scrape: about 2 ms
# of work (180,000 rule states at 10,000 hosts took 250-400 ms in one go).
STEP_ITEMS = 2000
_TYPE_LINE = re.compile(r"^# TYPE (\S+) ", re.MULTILINE)


def family_names(exposition: str) -> frozenset[str]:
    """The families an exposition in the text format declares."""
    return frozenset(_TYPE_LINE.findall(exposition))


def reserved_names(families: Iterable[str]) -> frozenset[str]:
    """Every name the families' samples may take: each family, and its stem (a counter's
    name without `_total`), with every suffix of FAMILY_SUFFIXES."""
    stems = set()
    for name in families:
        stems.add(name)
        stems.update(
            name.removesuffix(suffix) for suffix in FAMILY_SUFFIXES if name.endswith(suffix)
        )
    return frozenset(stem + suffix for stem in stems for suffix in ("", *FAMILY_SUFFIXES))


def _escape(value: str) -> str:
    """Escape a label value for the text format (backslash, double quote, newline)."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _number(value: float) -> str:
    """A sample value as the text format wants it (repr, except for Inf and NaN)."""
    text = repr(value)
    return _go_float(value) if text[-1] in "fn" else text  # inf, -inf, nan


def _go_float(value: float) -> str:
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def _head(out: list[str], name: str, kind: str, text: str) -> None:
    help_text = text.replace("\\", r"\\").replace("\n", r"\n")
    out.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")


_STATE_LINES = {
    current: "".join(
        f'{PREFIX}host_state\x00,state="{severity.name}"}} '
        f"{'1.0' if severity is current else '0.0'}\n"
        for severity in Severity
    )
    for current in Severity
}
_SEVERITY_TEXT = {severity: _number(float(severity)) for severity in Severity}


class FleetCollector(Collector):
    """Render host and rule states, call counts and measurements straight to the text format.

    A large fleet's exposition is hundreds of thousands of samples, so `render()` writes text
    lines from the fleet's own records: no metric or sample object is built, and nothing per
    sample is kept between scrapes. Label text that repeats across hosts (a check's labels, a
    rule's series) is cached by key for the length of one render.
    `collect()` parses that same text back, for registry users such as tests.
    """

    def __init__(
        self,
        fleet: Fleet,
        config: CollectorConfig,
        counters: CallCounters,
        store: Store,
        clock: Callable[[], float] = time.time,
        *,
        calendar: MaintenanceCalendar | None = None,
    ) -> None:
        self._calendar = calendar
        self._fleet = fleet
        self._config = config
        self._counters = counters
        self._store = store
        self._clock = clock
        self._owners = {rule.name: rule.owner for rule in config.rules}
        # Measurement lines kept between scrapes: by family, each host's piece; by host, the
        # series stamp its pieces were rendered at and the families it has pieces in.
        self._families: dict[str, dict[str, bytes]] = {}
        self._family_heads: dict[str, bytes] = {}
        self._rendered: dict[str, tuple[int, tuple[str, ...]]] = {}
        # Names of the collector's own families in all their forms (CollectorMetrics keeps it
        # current): measurement families by these names are held back.
        self.reserved: frozenset[str] = frozenset()
        self.services: ServiceWatch | None = None  # set by the app once built
        if config.staleness.owner is not None:
            self._owners[STALE_RULE] = config.staleness.owner

    def collect(self) -> Iterator[Metric]:
        yield from text_string_to_metric_families(self.render())

    def render(self) -> str:
        """The fleet's part of /metrics, in the Prometheus text format."""
        out: list[str] = []
        self.render_into(out)
        return "".join(out) + b"".join(self.measurement_chunks()).decode()

    def render_into(self, out: list[str]) -> None:
        """Append the fleet's part of /metrics to `out`, as text pieces: everything but the
        measurements (`measurement_chunks()`)."""
        for _ in self.render_steps(out):
            pass

    def render_steps(self, out: list[str]) -> Iterator[None]:
        """render_into(), yielding every STEP_ITEMS rule states or hosts: a scrape lets the
        event loop go between steps. What changes between two steps shows as it is then (a
        scrape of a fleet that keeps reporting is not one instant anyway)."""
        worst = yield from self._states(out)
        yield from self._hosts(out, worst)
        self._rules(out)
        self._calls(out)
        from collector.metrics.services import render_service_states  # it imports this module

        render_service_states(out, self.services)

    def _hosts(self, out: list[str], worst: dict[str, Severity]) -> Iterator[None]:
        now = self._clock()
        factor = self._config.staleness.after_intervals
        last: list[str] = []
        state: list[str] = []
        failing: list[str] = []
        # A copy: hosts may come and go while the scrape lets the event loop go.
        for index, (name, host) in enumerate(list(self._fleet.hosts.items()), 1):
            if not index % STEP_ITEMS:
                yield
            label = f'{{host="{_escape(name)}"'
            last.append(
                f"{PREFIX}host_last_report_timestamp_seconds{label}}} "
                f"{_number(host.record.last_report_at)}\n"
            )
            stale = self._fleet.is_stale(name, now, factor)
            current = Severity.STALE if stale else worst.get(name, Severity.OK)
            # All five lines of the state set at once: one replace instead of five f-strings.
            state.append(_STATE_LINES[current].replace("\x00", label))
            for check, status in host.checks.items():
                failing.append(
                    f'{PREFIX}check_failing{label},check="{_escape(check)}"}} '
                    f"{'0.0' if status.error is None else '1.0'}\n"
                )
        _head(
            out,
            f"{PREFIX}host_last_report_timestamp_seconds",
            "gauge",
            "When the host's last report arrived.",
        )
        out.extend(last)
        _head(
            out,
            f"{PREFIX}host_state",
            "gauge",
            "The host's state: 1 for the current one (worst rule, or STALE).",
        )
        out.extend(state)
        _head(
            out,
            f"{PREFIX}check_failing",
            "gauge",
            "1 when the check's last run failed or timed out.",
        )
        out.extend(failing)
        _head(out, f"{PREFIX}build_info", "gauge", "The running runwatch version.")
        out.append(f'{PREFIX}build_info{{version="{_escape(__version__)}"}} 1.0\n')
        _head(
            out,
            f"{PREFIX}series",
            "gauge",
            "Series the collector holds now, of all hosts (limits.max_series caps them).",
        )
        out.append(f"{PREFIX}series {float(len(self._fleet.series))}\n")

    def _rules(self, out: list[str]) -> None:
        """What each rule is: its owner group, metric and thresholds (a few lines per rule)."""
        _head(
            out,
            f"{PREFIX}rule_info",
            "gauge",
            "Each rule's owner group, metric and direction; join on `rule`.",
        )
        thresholds: list[str] = []
        for rule in self._config.rules:
            name, metric = _escape(rule.name), _escape(rule.metric)
            out.append(
                f'{PREFIX}rule_info{{rule="{name}",metric="{metric}",'
                f'group="{_escape(rule.owner)}",direction="{rule.direction}"}} 1.0\n'
            )
            levels = (
                ("warning", rule.warning),
                ("critical", rule.critical),
                ("clear", rule.clear_threshold),
            )
            for level, value in levels:
                if value is not None:
                    thresholds.append(
                        f'{PREFIX}rule_threshold{{rule="{name}",metric="{metric}",'
                        f'level="{level}"}} {_number(float(value))}\n'
                    )
        owner = self._config.staleness.owner
        if owner is not None:
            out.append(
                f'{PREFIX}rule_info{{rule="{STALE_RULE}",metric="",'
                f'group="{_escape(owner)}",direction="above"}} 1.0\n'
            )
        _head(
            out,
            f"{PREFIX}rule_threshold",
            "gauge",
            "Each rule's thresholds (level: warning, critical, clear) in the metric's unit.",
        )
        out.extend(thresholds)

    def _states(self, out: list[str]) -> Generator[None, None, dict[str, Severity]]:
        """Write every rule state; return each host's worst one (a by-product of the pass)."""
        # One sample per series (not a state set of five): it is the bulk of a large fleet's
        # exposition. `runwatch_rule_severity > 0` selects the problems.
        lines: list[str] = []
        calls: list[str] = []
        # Flapping and silenced states are few: a sample for each of them only, plus counts
        # that are always there (so an alert can say "none" as 0).
        flapping: list[str] = []
        silenced: list[str] = []
        worst: dict[str, Severity] = {}
        tails: dict[str, dict[str, str]] = {}
        last_host = None
        head = ""
        # A copy: states may come and go while the scrape lets the event loop go.
        for index, ((rule, host, key), rule_state) in enumerate(
            list(self._fleet.states.items()), 1
        ):
            if not index % STEP_ITEMS:
                yield
            by_key = tails.get(rule)
            if by_key is None:
                by_key = tails[rule] = {}
            tail = by_key.get(key)
            if tail is None:
                tail = by_key[key] = (
                    f'",rule="{_escape(rule)}",series="{_escape(_series_label(key))}"}} '
                )
            if host is not last_host:
                last_host, head = host, _escape(host)
            severity = rule_state.severity
            text = _SEVERITY_TEXT[severity]
            lines.append(f'{PREFIX}rule_severity{{host="{head}{tail}{text}\n')
            if severity or rule_state.call_id is not None:
                weight = problem_severity(rule, rule_state)  # the host's state, defined once
                if HOST_RANK[weight] > HOST_RANK[worst.get(host, Severity.OK)]:
                    worst[host] = weight
                if rule_state.call_id is not None:
                    group = _escape(self._owners.get(rule, ""))
                    calls.append(
                        f'{PREFIX}open_call_severity{{host="{head}",'
                        f'call="{rule_state.call_id}",group="{group}{tail}{text}\n'
                    )
            if rule_state.flapping:
                flapping.append(f'{PREFIX}rule_flapping{{host="{head}{tail}1.0\n')
            if rule_state.silenced:
                silenced.append(f'{PREFIX}rule_silenced{{host="{head}{tail}1.0\n')
        _head(
            out,
            f"{PREFIX}rule_severity",
            "gauge",
            "A rule's state as a number: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, 4 STALE.",
        )
        out.extend(lines)
        _head(
            out,
            f"{PREFIX}open_call_severity",
            "gauge",
            "Each rule series that has an open call (`call` is its id), with the rule's "
            "severity as in runwatch_rule_severity.",
        )
        out.extend(calls)
        _head(
            out,
            f"{PREFIX}rule_flapping",
            "gauge",
            "1 for each rule series that is flapping (its one call stays open until stable).",
        )
        out.extend(flapping)
        _head(
            out,
            f"{PREFIX}rule_silenced",
            "gauge",
            "1 for each rule series whose calls a maintenance window holds back.",
        )
        out.extend(silenced)
        _head(out, f"{PREFIX}rules_flapping", "gauge", "Rule series that are flapping now.")
        out.append(f"{PREFIX}rules_flapping {float(len(flapping))}\n")
        _head(
            out,
            f"{PREFIX}rules_silenced",
            "gauge",
            "Rule series held back by a maintenance window now.",
        )
        out.append(f"{PREFIX}rules_silenced {float(len(silenced))}\n")
        if self._calendar is not None:
            _head(
                out,
                f"{PREFIX}maintenance_windows_active",
                "gauge",
                "Silences and weekly maintenance windows in force now.",
            )
            out.append(
                f"{PREFIX}maintenance_windows_active "
                f"{float(len(self._calendar.active(self._clock())))}\n"
            )
        return worst

    def _calls(self, out: list[str]) -> None:
        names = {
            "opened": "Calls opened.",
            "reopened": "Resolved calls reopened because the problem came back in the window.",
            "updated": "Calls updated (severity change, comment).",
            "resolved": "Calls resolved after recovery.",
            "suppressed": "Problems held back by storm control and listed on an umbrella call.",
        }
        groups = sorted(self._config.groups)
        for kind, text in names.items():
            name = f"{PREFIX}calls_{kind}_total"
            _head(out, name, "counter", text)
            counts: dict[str, int] = getattr(self._counters, kind)
            for group in groups:
                out.append(
                    f'{name}{{group="{_escape(group)}"}} {_number(float(counts.get(group, 0)))}\n'
                )
        _head(out, f"{PREFIX}calls_open", "gauge", "Calls open now, by owner group.")
        counts = self._store.open_calls_by_group()
        for group in sorted(set(groups) | set(counts)):
            out.append(
                f'{PREFIX}calls_open{{group="{_escape(group)}"}} '
                f"{_number(float(counts.get(group, 0)))}\n"
            )
        outbox = self._store.outbox_counts()
        oldest = self._store.outbox_oldest_pending()
        now = self._clock()
        # Every configured sink, the built-in register too, so a quiet outbox reads 0; and
        # every notification channel, as the outbox names it (notify:<channel>).
        channels = self._config.notifications.channels
        sinks = sorted(self._config.sinks) + sorted(f"notify:{name}" for name in channels)
        pending = {sink: float(outbox.get((sink, "pending"), 0)) for sink in sinks}
        dead = {sink: float(outbox.get((sink, "dead"), 0)) for sink in sinks}
        age = {sink: max(0.0, now - oldest[sink]) if sink in oldest else 0.0 for sink in sinks}
        for name, text, values in (
            ("outbox_pending", "Call operations waiting for delivery to a help desk.", pending),
            (
                "outbox_dead_letters",
                "Call operations a help desk refused; see runwatch calls --dead.",
                dead,
            ),
            (
                "outbox_oldest_pending_age_seconds",
                "Age of the oldest call operation waiting for delivery; 0 when none waits.",
                age,
            ),
        ):
            _head(out, f"{PREFIX}{name}", "gauge", text)
            for sink, value in values.items():
                out.append(f'{PREFIX}{name}{{sink="{_escape(sink)}"}} {_number(value)}\n')

    def measurement_chunks(self) -> list[bytes]:
        """Every measurement as a gauge: the bulk of a large fleet's /metrics, as bytes.

        Each host's lines are kept between scrapes, in one piece per metric family, and
        rendered again at the scrape only for hosts whose series changed since (a new value
        bumps `Fleet.series_stamps` too); then each family's pieces are joined. A host that
        reports four times between two scrapes is rendered once, and if nobody scrapes, never.
        """
        if not self._config.metrics.measurements:
            return []
        self.warm()
        out: list[bytes] = []
        reserved = self.reserved
        for name, pieces in self._families.items():
            if pieces and PREFIX + name not in reserved:
                out.append(self._family_heads[name])
                out.append(b"".join(pieces.values()))
        return out

    def warm(self) -> None:
        """Render the measurement lines of every host whose series changed since they were
        last rendered (all of them after a restart), and forget hosts that are gone."""
        if not self._config.metrics.measurements:
            return
        for host in self._stale_hosts():
            self._render_now(host)
        rendered = self._rendered
        if len(rendered) > len(self._fleet.by_host):
            for gone in [host for host in rendered if host not in self._fleet.by_host]:
                self._forget(gone)

    async def warm_in_slices(self, hosts_per_slice: int = WARM_SLICE_HOSTS) -> None:
        """warm(), a slice of hosts at a time with the event loop let go between slices, so
        that reports are not held up behind a scrape that renders a whole fleet (10,000
        hosts of 55 series: about 0.8 s). Hosts that report meanwhile wait for warm()."""
        if not self._config.metrics.measurements:
            return
        pending = self._stale_hosts()
        for start in range(0, len(pending), hosts_per_slice):
            if start:
                await asyncio.sleep(0)
            for host in pending[start : start + hosts_per_slice]:
                if self._changed(host):
                    self._render_now(host)

    def _stale_hosts(self) -> list[str]:
        """Hosts whose kept lines are behind their series (a value, or the set of series)."""
        return [host for host in self._fleet.by_host if self._changed(host)]

    def _changed(self, host: str) -> bool:
        entry = self._rendered.get(host)
        return entry is None or entry[0] != self._fleet.series_stamps.get(host, 0)

    def refresh(self, host: str) -> None:
        """A host reported (or its series were dropped). Its new values wait for the next
        scrape, which renders them by the series stamp. A host whose metric names changed (its
        first report, a new name, a name gone) is rendered now, so that `hidden_families()`
        answers at once: about 3 µs to tell, against some 80 µs to render 55 series."""
        if not self._config.metrics.measurements:
            return
        keys = self._fleet.by_host.get(host)
        entry = self._rendered.get(host)
        if keys and entry is not None and {key[1] for key in keys} == set(entry[1]):
            return
        self._render_now(host)

    def _render_now(self, host: str) -> None:
        keys = self._fleet.by_host.get(host)
        if not keys:
            self._forget(host)
            return
        chunks = self._render_host(host, keys)
        entry = self._rendered.get(host)
        for name in entry[1] if entry is not None else ():
            if name not in chunks:
                del self._families[name][host]
        families = self._families
        for name, chunk in chunks.items():
            pieces = families.get(name)
            if pieces is None:
                pieces = families[name] = {}
                head: list[str] = []
                _head(head, PREFIX + name, "gauge", f"Measurement {name} as reported by agents.")
                self._family_heads[name] = head[0].encode()
            pieces[host] = chunk
        self._rendered[host] = (self._fleet.series_stamps.get(host, 0), tuple(chunks))

    def hidden_families(self, host: str) -> list[str]:
        """The host's measurement names held back from /metrics (a collector family's name)."""
        entry = self._rendered.get(host)
        return (
            sorted(name for name in entry[1] if PREFIX + name in self.reserved)
            if entry is not None
            else []
        )

    def _forget(self, host: str) -> None:
        entry = self._rendered.pop(host, None)
        for name in entry[1] if entry is not None else ():
            del self._families[name][host]

    def _render_host(self, host: str, keys: set[SeriesKey]) -> dict[str, bytes]:
        """One host's measurement lines, grouped by family (in the order of the sorted keys).
        About 1.5 µs a sample, most of it the float's repr."""
        series = self._fleet.series
        head = f'{{host="{_escape(host)}'
        lines_by_name: dict[str, list[str]] = {}
        for key in sorted(keys):
            record = series[key]
            name = key[1]
            lines = lines_by_name.get(name)
            if lines is None:
                lines = lines_by_name[name] = []
            tail = _measurement_tail(record.check, key[2])
            value = record.value
            if value - value:  # inf, -inf or nan: spelled as Prometheus spells them
                lines.append(f"{PREFIX}{name}{head}{tail}{_go_float(value)}\n")
            else:
                lines.append(f"{PREFIX}{name}{head}{tail}{value!r}\n")
        return {name: "".join(lines).encode() for name, lines in lines_by_name.items()}


@functools.lru_cache(maxsize=65536)
def _measurement_tail(check: str, labels_key: str) -> str:
    """The label text after the host: the check, the series' labels, the closing brace.
    Cached: the same check and labels repeat on every host."""
    labels = json.loads(labels_key)
    extra = "".join(f',{k}="{_escape(str(v))}"' for k, v in labels.items())
    return f'",check="{_escape(check)}"{extra}}} '


@functools.lru_cache(maxsize=65536)
def _series_label(key: str) -> str:
    """Render a labels key (`{"mountpoint":"/"}`) as `mountpoint=/` for a label value."""
    labels = json.loads(key)
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
