"""The collector service: store, fleet, evaluation, calls and metrics wired together."""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from checks.schema import Report
from collector.api.limits import RequestLimits
from collector.auth import ROLE_OPERATOR, TokenVerifier
from collector.config import STALE_RULE, BuiltinSinkConfig, CollectorConfig
from collector.errors import Rejection, store_unavailable
from collector.evaluation.evaluator import RuleEvaluator
from collector.evaluation.maintenance import MaintenanceCalendar, weekly_occurrence
from collector.evaluation.overrides import ThresholdResolver
from collector.evaluation.rules import Severity
from collector.incidents.calls import Call, CallEvent, CallStatus, iso
from collector.incidents.manager import CallCounters, IncidentManager
from collector.incidents.outbox import OutboxWorker, RetryPolicy
from collector.incidents.sync import TicketSync
from collector.incidents.templates import CallTemplates
from collector.ingest.ingestor import IngestResult, IngestWarning, ReportIngestor, SeriesLimits
from collector.metrics.instruments import CollectorMetrics
from collector.sinks.adapters import build_sinks, priority_map
from collector.store.opening import open_store
from collector.store.protocols import Store
from collector.store.records import AuditEntry, CallLink, RuleStateRecord, Silence
from collector.view.fleet import Fleet
from collector.view.replica import ReplicaSync

log = logging.getLogger(__name__)


def settle_garbage_collector() -> None:
    """Keep Python's full collections short: collect the young generations, then move what
    survived out of the collector's sight (gc.freeze).

    A large fleet is millions of long-lived objects; a full collection over them stalls the
    event loop for half a second or more (572 ms at 10,000 hosts), and reports wait. Frozen
    objects are still freed by reference counting when replaced; only a reference cycle that
    survived two collections before a freeze would be kept: once an hour everything is
    unfrozen and collected in full, so such garbage cannot pile up.
    """
    now = time.monotonic()
    if now - _full_collection["at"] >= _FULL_COLLECTION_EVERY_SECONDS:
        _full_collection["at"] = now
        gc.unfreeze()
        gc.collect()
    else:
        gc.collect(1)
    gc.freeze()


_FULL_COLLECTION_EVERY_SECONDS = 3600.0
_full_collection = {"at": time.monotonic()}  # when everything was last collected


def _led(job: str, store: Store, run: Callable[[float], int]) -> Callable[[float], int]:
    """`run`, done only by the replica holding the lead for `job` (every time, on SQLite)."""

    def led(now: float) -> int:
        return run(now) if store.try_lead(job) else 0

    return led


class CollectorService:
    """Everything the API needs, behind plain methods. Single-threaded: call from one thread."""

    def __init__(self, config: CollectorConfig, store: Store | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.metrics = CollectorMetrics(config)
        self.store: Store = store or open_store(config, self.metrics.store, background=True)
        self.tokens = TokenVerifier(config.tokens_file)
        self.operators = TokenVerifier(config.operator_tokens_file)
        # What /metrics serves (the outer registry is for tests and tools).
        self.limits = RequestLimits(config.limits, self.metrics.own)
        limits = config.limits
        self.fleet = Fleet()
        self.counters = CallCounters()
        self.calendar = MaintenanceCalendar(config.maintenance, self.store, clock())
        self.metrics.watch(self.fleet, config, self.counters, self.store, clock,
                           calendar=self.calendar)
        self.registry = self.metrics.registry
        self.ingest_metrics = self.metrics.ingest
        delivery_metrics = self.metrics.delivery
        self.sinks = build_sinks(config.sinks)
        self.outbox: OutboxWorker | None = None
        self._outbox_store: Store | None = None
        external = {name: priority_map(config.sinks[name]) for name in self.sinks}
        if self.sinks:
            # The worker talks to help desks from its own thread, with its own connection.
            worker_store: Store = (open_store(config, self.metrics.store) if store is None
                                   else store)
            self._outbox_store = worker_store
            sync = TicketSync(worker_store, self.sinks, config.groups, external,
                              timings=self.metrics.calls,
                              on_error=lambda sink: delivery_metrics.sink_error(sink, "status"))
            policy = RetryPolicy(float(config.outbox.first_retry),
                                 float(config.outbox.max_retry))
            self.outbox = OutboxWorker(worker_store, self.sinks, clock=clock, policy=policy,
                                       metrics=delivery_metrics, sync=_led("sync", worker_store,
                                                                    sync.run_once),
                                       sync_interval=float(config.sync_interval))
        self.incidents = IncidentManager(
            self.store, dict(config.groups), counters=self.counters, external=external,
            on_enqueue=self.outbox.notify if self.outbox else None, storm=config.storm,
            templates=CallTemplates(config.templates.summary, config.templates.description,
                                    config.dashboard_url),
            timings=self.metrics.calls)
        self.resolver = ThresholdResolver(config)
        self.evaluator = RuleEvaluator(config, self.fleet, self.store, self.incidents,
                                       calendar=self.calendar, resolver=self.resolver)
        self._reload()
        self.replica = ReplicaSync(self.fleet, self.store)
        self.ingestor = ReportIngestor(self.fleet, self.store, self.evaluator, SeriesLimits(
            limits.max_series_per_host, limits.max_series, float(limits.max_interval),
            limits.max_checks_per_host), self.replica)
        # The warning codes each host was last told about: each is logged once, when it starts.
        self._warned: dict[str, frozenset[str]] = {}

    def start(self) -> None:
        """Start background delivery to help desks (when any are configured)."""
        if self.outbox is not None:
            self.outbox.start()

    def authenticate(self, authorization: str | None, *, client: str | None = None) -> str:
        """Return the host the bearer token belongs to, or raise a 401 Rejection.

        `client`: the peer's address. One that presented too many unknown tokens is refused
        (Throttled) for a while, whatever it sends; see RequestLimits.check_address."""
        if client is not None:
            self.limits.check_address(client)
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Rejection(401, "unauthorized", "missing bearer token")
        host = self.tokens.host_for(token.strip())
        if host is None:
            if client is not None:
                self.limits.failed(client, "agent")
            raise Rejection(401, "unauthorized", "unknown or revoked token")
        self.limits.check("agent", host)
        return host

    def authenticate_operator(self, authorization: str | None, *, change: bool = True,
                              client: str | None = None) -> str:
        """Return the operator the bearer token belongs to, or raise a 401 Rejection.

        `change`: the request changes something, which a read-only token may not (403).
        `client`: the peer's address, as for authenticate()."""
        if client is not None:
            self.limits.check_address(client)
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Rejection(401, "unauthorized", "missing bearer token (an operator token)")
        found = self.operators.identify(token.strip())
        if found is None:
            if client is not None:
                self.limits.failed(client, "operator")
            raise Rejection(401, "unauthorized", "unknown or revoked operator token")
        operator, role = found
        self.limits.check("operator", operator)
        if change and role != ROLE_OPERATOR:
            log.warning("read-only operator %s refused a change", operator)
            raise Rejection(403, "forbidden", f"{operator} has a read-only token: it may look "
                            "but not change anything")
        return operator

    # -- the audit log, and calls handled by hand ---------------------------------------------

    def audit(self, actor: str, action: str, target: str, detail: str = "", via: str = "api"
              ) -> None:
        """Record a change a person made (call inside the change's transaction when it has one)."""
        with self.store.transaction():
            self.store.add_audit(AuditEntry(0, self.clock(), actor, action, target, detail, via))

    def is_builtin_call(self, call: Call) -> bool:
        """Whether the call lives in the built-in register (handled here, not in a help desk)."""
        group = self.config.groups.get(call.group)
        sink = self.config.sinks.get(group.sink) if group else None
        return sink is None or isinstance(sink, BuiltinSinkConfig)

    def _handled_call(self, call_id: int) -> Call:
        call = self.store.get_call(call_id)
        if call is None:
            raise Rejection(404, "not_found", f"no call {call_id}")
        if not self.is_builtin_call(call):
            raise Rejection(409, "conflict", f"call {call_id} lives in the help desk "
                            f"{self.config.groups[call.group].sink}: handle it there")
        return call

    def acknowledged_at(self, call: Call) -> float | None:
        """When the call was first acknowledged: by hand here, or in its help desk."""
        for event in self.store.call_events(call.id):
            if event.kind == "acknowledged":
                return event.at
        group = self.config.groups.get(call.group)
        link = self.store.get_link(call.id, group.sink) if group else None
        return link.acknowledged_at if link else None

    def acknowledge_call(self, call_id: int, actor: str, via: str = "api") -> Call:
        """Acknowledge a built-in call: someone is on it. Once per call (409 after that)."""
        # Rejections are raised before the transaction: a frozen exception cannot pass
        # through a context manager (it sets __traceback__ on the way out).
        now = self.clock()
        call = self._handled_call(call_id)
        if call.status != "open":
            raise Rejection(409, "conflict", f"call {call_id} is resolved")
        if any(e.kind == "acknowledged" for e in self.store.call_events(call_id)):
            raise Rejection(409, "conflict", f"call {call_id} is already acknowledged")
        with self.store.transaction():
            self.store.add_call_event(CallEvent(call_id, now, "acknowledged",
                                                f"Acknowledged by {actor}."))
            call.updated_at = now
            self.store.update_call(call)
            self.store.add_audit(AuditEntry(0, now, actor, "call.acknowledge",
                                            f"call {call_id}", call.summary, via))
        self.metrics.calls.acknowledged(call.group, now - call.opened_at)
        log.info("%s acknowledged call %d", actor, call_id)
        return call

    def comment_call(self, call_id: int, actor: str, text: str, via: str = "api") -> Call:
        """Add a person's comment to a built-in call."""
        text = text.strip()
        if not text:
            raise Rejection(422, "invalid", "the comment is empty", "text")
        now = self.clock()
        call = self._handled_call(call_id)
        with self.store.transaction():
            self.store.add_call_event(CallEvent(call_id, now, "comment", f"{actor}: {text}"))
            call.updated_at = now
            self.store.update_call(call)
            self.store.add_audit(AuditEntry(0, now, actor, "call.comment", f"call {call_id}",
                                            text[:500], via))
        log.info("%s commented on call %d", actor, call_id)
        return call

    def resolve_call(self, call_id: int, actor: str, note: str = "", via: str = "api") -> Call:
        """Resolve a built-in call by hand. Like a help desk closing it: it is never reopened,
        and a problem that still holds opens a new call at the next evaluation."""
        now = self.clock()
        call = self._handled_call(call_id)
        if call.status != "open":
            raise Rejection(409, "conflict", f"call {call_id} is already resolved")
        # Another replica may have moved this host on: take it, and its latest view.
        with self.replica.hold([call.host], now) as held:
            self.store.retire_call(call_id, now)
            text = f"Resolved by {actor}" + (f": {note.strip()}" if note.strip() else ".")
            self.store.add_call_event(CallEvent(call_id, now, "resolved", text))
            released = []
            for key, state in self.fleet.states.items():
                if state.call_id == call_id:
                    freed = replace(state, call_id=None, call_severity=Severity.OK)
                    self.fleet.states[key] = freed
                    released.append(RuleStateRecord(key[0], key[1], key[2], freed))
            self.store.save_rule_states(released)
            held.changed(record.host for record in released)
            self.store.add_audit(AuditEntry(0, now, actor, "call.resolve", f"call {call_id}",
                                            note.strip()[:500], via))
        CallCounters.bump(self.counters.resolved, call.group)
        self.metrics.calls.resolved(call.group, now - call.opened_at)
        log.info("%s resolved call %d by hand", actor, call_id)
        resolved = self.store.get_call(call_id)
        assert resolved is not None
        return resolved

    def ingest(self, token_host: str, report: Report, started: float | None = None
               ) -> IngestResult:
        """Ingest a validated report sent with a token for `token_host`.

        `started` is the perf_counter() reading when the request arrived, so the latency
        histogram covers reading, decoding and validating the body too.
        """
        (outcome,) = self.ingest_many([(token_host, report, started)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def ingest_many(self, items: Sequence[tuple[str, Report, float | None]]
                    ) -> list[IngestResult | Exception]:
        """Ingest reports of distinct hosts, each `(token_host, report, started)` as for
        ingest(), in one transaction. Each gets its result, or the exception that refused it
        (a Rejection, or the store's error).

        Should the transaction fail, the reports are ingested again one by one, so that a
        report the store cannot take fails alone and the others are stored."""
        outcomes: dict[int, IngestResult | Exception] = {}
        valid: list[tuple[int, Report, float]] = []
        for index, (token_host, report, started) in enumerate(items):
            try:
                self._admit(token_host, report)
            except Rejection as rejection:
                outcomes[index] = rejection
                continue
            valid.append((index, report, time.perf_counter() if started is None else started))
        if valid:
            self.ingest_metrics.batch_size.observe(len(valid))
            try:
                results = self.ingestor.ingest_many([report for _, report, _ in valid],
                                                    self.clock())
            except Exception as exc:
                # The transaction rolled back; rebuild the in-memory view so the two agree.
                self.ingest_metrics.failed.inc()
                log.exception("ingest failed for %s; reloading state",
                              ", ".join(f"host {r.host} seq {r.seq}" for _, r, _ in valid))
                self._reload()
                failure = exc if len(valid) == 1 else None
                for index, report, started in valid:
                    if failure is not None:
                        outcomes[index] = failure
                        continue
                    try:
                        outcomes[index] = self.ingest(report.host, report, started)
                    except Exception as alone:  # noqa: BLE001 - the caller answers for each
                        outcomes[index] = alone
                        if store_unavailable(alone):
                            failure = alone  # the rest would fail the same way
            else:
                for (index, report, started), result in zip(valid, results, strict=True):
                    outcomes[index] = self._count(report.host, result, started)
        return [outcomes[index] for index in range(len(items))]

    def _admit(self, token_host: str, report: Report) -> None:
        """Refuse a report its token may not send, or one too large to store."""
        if report.host != token_host:
            raise Rejection(403, "forbidden",
                            f"this token may report only for host {token_host!r}", "host")
        if len(report.measurements) > self.config.limits.max_measurements:
            raise Rejection(413, "too_large",
                            f"{len(report.measurements)} measurements; the limit is "
                            f"{self.config.limits.max_measurements}", "measurements")

    def _count(self, host: str, result: IngestResult, started: float) -> IngestResult:
        """Count an ingested report; return its result with every warning for the agent."""
        if result.status == "accepted" and self.metrics.fleet is not None:
            self.metrics.fleet.refresh(host)  # its /metrics text, while it is at hand
            hidden = self.metrics.fleet.hidden_families(host)
            if hidden:
                names = ", ".join(f"runwatch_{name}" for name in hidden[:5])
                result = replace(result, warnings=(*result.warnings, IngestWarning(
                    "reserved_name", f"not exposed on /metrics: {names}: the name is one of "
                    "the collector's own metric families, or one of their forms (_bucket, "
                    "_count, _sum, _created, _total, _info). Rename the measurement; it is "
                    "still stored and evaluated.")))
        self.ingest_metrics.latency.observe(time.perf_counter() - started)
        if result.status == "duplicate":
            self.ingest_metrics.duplicates.inc()
        else:
            self.ingest_metrics.ingested.inc()
            self.ingest_metrics.measurements.inc(result.measurements)
            self._note_warnings(host, result.warnings)
        return result

    def _note_warnings(self, host: str, warnings: tuple[IngestWarning, ...]) -> None:
        """Count the series the limits refused; log a warning when it starts for the host."""
        codes = frozenset(warning.code for warning in warnings)
        told = self._warned.get(host, frozenset())
        for warning in warnings:
            if warning.dropped:
                self.ingest_metrics.series_refused.labels(host, warning.code).inc(
                    warning.dropped)
            if warning.code not in told:
                log.warning("host %s: %s (%s)", host, warning.message, warning.code)
        if codes != told:
            for code in told - codes:
                log.info("host %s: %s no longer applies", host, code)
            if codes:
                self._warned[host] = codes
            else:
                self._warned.pop(host, None)

    def reject(self, rejection: Rejection) -> None:
        self.ingest_metrics.rejected.labels(rejection.reason).inc()

    def tick(self) -> None:
        """Evaluate time-based rules now, all at once (tests and tools; the API uses slices)."""
        for _ in self.tick_slices():
            pass

    def tick_slices(self, slice_seconds: float = 0.01) -> Iterator[None]:
        """Evaluate time-based rules, yielding every `slice_seconds` of work.

        The API runs one tick every `evaluation_interval`, and serves reports between the
        slices, so a tick over a large fleet never holds an agent's report up for long. Each
        host due is evaluated in its own transaction. Only one replica of those sharing a
        store evaluates time (the one holding the `evaluation` lead).
        """
        now = self.clock()
        try:
            if not self.store.try_lead("evaluation"):
                # Its view of each host catches up when the host reports through it. Its
                # view grows with those reports all the same: without this, full collections
                # over it stalled a follower for 200-400 ms every half minute.
                settle_garbage_collector()
                return
            with self.store.transaction():
                self._follow_desk_closures(now)
                self.evaluator.prune_history(now)
            yield
            shared = self.store.shared
            # Finding the hosts due walks every host and rule state: in slices too.
            due = yield from self.evaluator.due_in_order_steps(now, slice_seconds)
            if shared:
                # Silences set through another replica's API are in the store.
                self.calendar.reload(self.store, now)
                # From this view only the hosts it holds current; the others' silence and
                # pending problems are read from the database.
                due = self.replica.current_of(due)
                due += sorted(set(self.store.hosts_to_tick(
                    now, self.config.staleness.after_intervals, STALE_RULE)) - set(due))
            began = time.perf_counter()
            for host in due:
                with self.replica.hold([host], now) as held:
                    if held.missing(host):
                        continue
                    if self.evaluator.tick_host(host, now):
                        held.changed([host])
                if time.perf_counter() - began >= slice_seconds:
                    yield
                    began = time.perf_counter()
            settle_garbage_collector()
        except Exception:
            self.ingest_metrics.evaluation_failures.inc()
            log.exception("evaluation tick failed; reloading state")
            self._reload()

    def _follow_desk_closures(self, now: float) -> None:
        """Calls the help desk closed while failing, under the `new_call` policy: once the
        group's `new_call_after` has passed, retire the old call; the problem, if it still
        holds, opens a new one at this very evaluation."""
        for link in self.store.open_links():
            if link.desk_closed_at is None:
                continue
            call = self.store.get_call(link.call_id)
            group = self.config.groups.get(call.group) if call else None
            if call is None or group is None or now - link.desk_closed_at < float(
                    group.new_call_after):
                continue
            self.store.retire_call(call.id, now)
            self.store.add_call_event(CallEvent(
                call.id, now, "resolved", "Closed in the help desk while the problem persisted; "
                "a new call follows."))
            released = []
            for key, state in self.fleet.states.items():
                if state.call_id == call.id:
                    freed = replace(state, call_id=None, call_severity=Severity.OK)
                    self.fleet.states[key] = freed
                    released.append(RuleStateRecord(key[0], key[1], key[2], freed))
            self.store.save_rule_states(released)
            log.info("call %d closed in %s while failing; a new call follows", call.id,
                     link.sink)

    def _reload(self) -> None:
        now = self.clock()
        span = self.evaluator.history_span
        self.fleet.reload(self.store, now, now - span if span else None)
        if self.metrics.fleet is not None:
            self.metrics.fleet.warm()  # the first scrape after a start only joins text
        settle_garbage_collector()

    # -- read side ------------------------------------------------------------------------------

    def hosts(self, only: str | None = None) -> list[dict[str, Any]]:
        now = self.clock()
        factor = self.config.staleness.after_intervals
        out = []
        worst = self.fleet.worst_by_host()
        problems: dict[str, list[dict[str, Any]]] = {}
        for (rule, state_host, labels), state in sorted(self.fleet.states.items()):
            if (state.severity is not Severity.OK or state.flapping) and (
                    only is None or state_host == only):
                problems.setdefault(state_host, []).append(
                    {"rule": rule, "labels": json.loads(labels), "state": state.severity.name,
                     "value": state.value, "since": state.changed_at, "call_id": state.call_id,
                     "flapping": state.flapping, "silenced": state.silenced,
                     "in_parent_call": state.absorbed_by, "detail": state.detail})
        for name in sorted(self.fleet.hosts):
            if only is not None and name != only:
                continue
            host = self.fleet.hosts[name]
            stale = self.fleet.is_stale(name, now, factor)
            measurements = [
                {"check": s.check, "name": s.name, "value": s.value, "unit": s.unit,
                 "labels": s.labels, "timestamp": s.timestamp}
                for key in sorted(self.fleet.by_host.get(name, ()))
                for s in (self.fleet.series[key],)
            ]
            out.append({
                "host": name,
                "state": (Severity.STALE if stale else worst.get(name, Severity.OK)).name,
                "last_report_at": host.record.last_report_at,
                "first_seen": host.record.first_seen,
                "interval_seconds": host.record.interval_seconds,
                "agent_version": host.record.agent_version,
                "labels": host.record.labels,
                "parents": list(self.evaluator.parents_of(name)),
                "last_seq": host.record.last_seq,
                "checks": [
                    {"check": c.check, "type": c.type, "interval_seconds": c.interval_seconds,
                     "last_run_at": c.last_run_at, "duration_seconds": c.duration_seconds,
                     "error_kind": c.error_kind, "error": c.error, "output": c.output}
                    for c in sorted(host.checks.values(), key=lambda c: c.check)
                ],
                "problems": problems.get(name, []),
                "measurements": measurements,
            })
        return out

    # -- maintenance windows and explanations ---------------------------------------------------

    def add_silence(self, operator: str, *, host: str, rule: str, duration: float, reason: str,
                    starts_at: float | None = None, via: str = "api") -> Silence:
        """Hold back calls for matching hosts and rules for `duration` seconds from the start."""
        now = self.clock()
        start = now if starts_at is None else starts_at
        silence = Silence(0, host, rule, start, start + duration, reason, operator, now)
        with self.store.transaction():
            silence.id = self.store.add_silence(silence)
            self.store.add_audit(AuditEntry(
                0, now, operator, "silence.add", f"silence {silence.id}",
                f"host {host} rule {rule} until {iso(silence.ends_at)}: {reason}", via))
        log.info("operator %s silenced host %r rule %r until %s: %s", operator, host, rule,
                 iso(silence.ends_at), reason)
        self._silences_changed(now)
        return silence

    def end_silence(self, silence_id: int, operator: str, via: str = "api") -> Silence | None:
        """End a silence now; the next evaluation opens calls for problems still there."""
        now = self.clock()
        with self.store.transaction():
            ended = self.store.end_silence(silence_id, now, operator)
            if ended is not None:
                self.store.add_audit(AuditEntry(
                    0, now, operator, "silence.end", f"silence {silence_id}",
                    f"host {ended.host_pattern} rule {ended.rule_pattern}", via))
        if ended is not None:
            log.info("operator %s ended silence %d (host %r rule %r)", operator, silence_id,
                     ended.host_pattern, ended.rule_pattern)
            self._silences_changed(now)
        return ended

    def _silences_changed(self, now: float) -> None:
        self.calendar.reload(self.store, now)
        self.tick()  # a window that ended lets held-back calls open at once

    def silences(self, include_ended: bool = False) -> list[dict[str, Any]]:
        """Operators' silences (current and future, or all) and the weekly windows."""
        now = self.clock()
        out: list[dict[str, Any]] = [
            {"id": s.id, "source": "silence", "host": s.host_pattern, "rule": s.rule_pattern,
             "starts_at": s.starts_at, "ends_at": s.ends_at, "reason": s.reason,
             "created_by": s.created_by, "created_at": s.created_at, "ended_by": s.ended_by,
             "active": s.active(now)}
            for s in self.store.list_silences(None if include_ended else now)]
        for window in self.config.maintenance:
            span = weekly_occurrence(window, now)
            out.append({
                "id": None, "source": "config", "name": window.name, "host": window.hosts,
                "rule": window.rules, "starts_at": span[0] if span else None,
                "ends_at": span[1] if span else None, "reason": window.reason,
                "created_by": "config", "active": span is not None,
                "weekly": [{"days": list(w.days), "start": w.start,
                            "duration": float(w.duration)} for w in window.weekly],
                "timezone": window.timezone})
        return out

    def explain(self, host: str, rule_name: str) -> dict[str, Any] | None:
        """Which thresholds apply to a rule on a host and why; None for an unknown rule."""
        rule = next((r for r in self.config.rules if r.name == rule_name), None)
        if rule is None:
            return None
        now = self.clock()
        known = self.fleet.hosts.get(host)
        labels = dict(known.record.labels) if known else {}
        found = self.resolver.explain(rule, host, labels)

        def thresholds(r: Any) -> dict[str, Any]:
            return {"direction": r.direction, "warning": r.warning, "critical": r.critical,
                    "clear": r.clear_threshold, "for": float(r.for_)}

        flapping = rule.flapping or self.config.flapping
        states = [
            {"labels": json.loads(key[2]), "state": state.severity.name, "value": state.value,
             "flapping": state.flapping, "silenced": state.silenced, "call_id": state.call_id}
            for key, state in sorted(self.fleet.states.items())
            if key[0] == rule_name and key[1] == host]
        return {
            "host": host, "rule": rule.name, "metric": rule.metric, "owner": rule.owner,
            "host_known": known is not None, "host_labels": labels,
            "rule_thresholds": thresholds(rule),
            "effective_thresholds": thresholds(found.effective),
            "source": found.source,
            "forecast": None if rule.forecast is None else {
                "reaches": rule.forecast.reaches, "over": float(rule.forecast.over)},
            "host_groups": [{"name": g.group, "member": g.member, "why": g.why,
                             "overrides_rule": g.overrides_rule, "applies": g.applies}
                            for g in found.groups],
            "flapping": {"enabled": flapping.enabled, "changes": flapping.changes,
                         "window": float(flapping.window),
                         "source": "rule" if rule.flapping else "collector"},
            "maintenance": [{"source": w.source, "ends_at": w.ends_at, "reason": w.reason,
                             "created_by": w.created_by}
                            for w in self.calendar.covering(host, rule.name, now)],
            "parents": list(self.evaluator.parents_of(host)),
            "states": states,
        }

    def call_history(self, call_id: int
                     ) -> tuple[Call, list[CallEvent], CallLink | None] | None:
        """A call, its events oldest first, and its ticket in its group's help desk."""
        call = self.store.get_call(call_id)
        if call is None:
            return None
        group = self.config.groups.get(call.group)
        link = self.store.get_link(call_id, group.sink) if group else None
        return call, self.store.call_events(call_id), link

    def calls(self, status: CallStatus | None, group: str | None, limit: int = 500
              ) -> list[Call]:
        return self.store.list_calls(status, group, limit)

    def close(self) -> None:
        self.limits.close()
        if self.outbox is not None:
            self.outbox.stop()
            if self._outbox_store is not self.store and self._outbox_store is not None:
                self._outbox_store.close()
        self.store.close()
