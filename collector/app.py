"""The collector's wiring: every stage built and connected, behind one facade (CollectorService).

The stages do the work; this module only builds them and passes calls through. See
docs/architecture.md for the flow of a report through them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

from checks.schema import Report
from collector.api.credentials import Credentials
from collector.api.limits import RequestLimits
from collector.auth import TokenVerifier
from collector.config import CollectorConfig
from collector.evaluation.evaluator import RuleEvaluator
from collector.evaluation.maintenance import MaintenanceCalendar
from collector.evaluation.overrides import ThresholdResolver
from collector.evaluation.silences import Silences
from collector.evaluation.tick import EvaluationTick, settle_garbage_collector
from collector.incidents.bulk import BulkOutcome, BulkRequest, work_calls
from collector.incidents.by_hand import CallsByHand
from collector.incidents.manager import CallCounters, IncidentManager
from collector.incidents.outbox import OutboxWorker, RetryPolicy
from collector.incidents.retirement import HostRetirements
from collector.incidents.sync import TicketSync
from collector.incidents.templates import CallTemplates
from collector.incidents.writer import DecisionWriter
from collector.ingest.admission import IngestAdmission
from collector.ingest.ingestor import IngestResult, ReportIngestor, SeriesLimits
from collector.metrics.exposition import FleetCollector
from collector.metrics.instruments import CollectorMetrics
from collector.notify.ack import KEY_FILE, AckLinks
from collector.notify.delivery import Notifications, build_channels
from collector.notify.escalation import CallEscalations
from collector.notify.plan import NotificationPlanner
from collector.notify.ratelimit import count_keys
from collector.services.messages import StatusMessages
from collector.services.watch import ServiceWatch
from collector.sinks.adapters import build_sinks, priority_map
from collector.store.opening import open_store
from collector.store.protocols import Store
from collector.view.fleet import Fleet
from collector.view.reading import FleetReader
from collector.view.replica import ReplicaSync
from collector.view.takeover import Takeover

log = logging.getLogger(__name__)

S = TypeVar("S")
P = ParamSpec("P")
R = TypeVar("R")


def _led(job: str, store: Store, run: Callable[[float], int]) -> Callable[[float], int]:
    """`run`, done only by the replica holding the lead for `job` (every time, on SQLite)."""

    def led(now: float) -> int:
        return run(now) if store.try_lead(job) else 0

    return led


def _handed_to(
    stage: str, method: Callable[Concatenate[S, P], R]
) -> Callable[Concatenate[Any, P], R]:
    """A service method that calls `method` of its stage named `stage` (the one in place at
    the call: a new config builds new stages) with the same arguments."""

    def handed_on(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(getattr(self, stage), *args, **kwargs)

    handed_on.__name__ = method.__name__
    handed_on.__doc__ = method.__doc__
    return handed_on


class CollectorService:
    """Everything the API needs, behind plain methods. Single-threaded: call from one thread."""

    def __init__(
        self,
        config: CollectorConfig,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self.clock = clock
        # What a GET of the status page answers, once the app is built (api/console/status.py).
        self.status_answers: Any = None
        self.stall_watch: Any = None  # where the event loop was stuck (api/stalls.py)
        self.metrics = CollectorMetrics(config)
        self.store: Store = store or open_store(config, self.metrics.store, background=True)
        self.tokens = TokenVerifier(config.tokens_file)
        self.operators = TokenVerifier(config.operator_tokens_file)
        # What /metrics serves (the outer registry is for tests and tools).
        self.limits = RequestLimits(config.limits, self.metrics.own)
        self.credentials = Credentials(self.tokens, self.operators, self.limits)
        limits = config.limits
        self.fleet = Fleet()
        self.counters = CallCounters()
        self.calendar = MaintenanceCalendar(config.maintenance, self.store, clock())
        self.metrics.watch(
            FleetCollector(
                self.fleet, config, self.counters, self.store, clock, calendar=self.calendar
            )
        )
        self.registry = self.metrics.registry
        self.ingest_metrics = self.metrics.ingest
        delivery_metrics = self.metrics.delivery
        self.sinks = build_sinks(config.sinks)
        self.outbox: OutboxWorker | None = None
        self.sink_check: Any = None  # the start-up self-check's thread, once started
        self._outbox_store: Store | None = None
        external = {name: priority_map(config.sinks[name]) for name in self.sinks}
        notify = config.notifications
        self.channels = build_channels(notify)  # notification channels, by name
        # The signed links in notifications that acknowledge their call (None: switched off).
        self.ack_links = AckLinks.for_collector(notify, config.external_url, config.data_dir)
        if (
            self.ack_links is not None
            and config.store.backend == "postgresql"
            and notify.ack_links.secret is None
        ):
            log.warning(
                "notifications.ack_links.secret is not set: this collector signs the links "
                "in its notifications with a key of its own data dir (%s), and a replica "
                "with another data dir refuses them (403); give every replica the same "
                "secret file",
                config.data_dir / KEY_FILE,
            )
        # group -> its help desk, for the ticket link in notifications
        ticket_sinks = {name: g.sink for name, g in config.groups.items() if g.sink in self.sinks}
        if self.sinks or notify.channels:
            # The worker talks to help desks from its own thread, with its own connection.
            worker_store: Store = open_store(config, self.metrics.store) if store is None else store
            self._outbox_store = worker_store
            sync = TicketSync(
                worker_store,
                self.sinks,
                config.groups,
                external,
                timings=self.metrics.calls,
                on_error=lambda sink: delivery_metrics.sink_error(sink, "status"),
                notifications=NotificationPlanner(notify, worker_store, ticket_sinks=ticket_sinks),
            )
            policy = RetryPolicy(float(config.outbox.first_retry), float(config.outbox.max_retry))
            self.outbox = OutboxWorker(
                worker_store,
                self.sinks,
                clock=clock,
                policy=policy,
                metrics=delivery_metrics,
                sync=_led("sync", worker_store, sync.run_once),
                sync_interval=float(config.sync_interval),
                notifications=Notifications(
                    self.channels,
                    console_url=config.external_url,
                    ack_links=self.ack_links,
                    count_keys=count_keys(config.notifications),
                ),
            )
        self.incidents = IncidentManager(
            self.store,
            dict(config.groups),
            counters=self.counters,
            external=external,
            on_enqueue=self.outbox.notify if self.outbox else None,
            storm=config.storm,
            templates=CallTemplates(
                config.templates.summary,
                config.templates.description,
                config.dashboard_url,
                console_url=config.external_url,
            ),
            timings=self.metrics.calls,
            subject_limits={
                name: sink.subject_max_chars
                for name, sink in config.sinks.items()
                if hasattr(sink, "subject_max_chars")
            },
            notifications=NotificationPlanner(
                notify,
                self.store,
                ticket_sinks=ticket_sinks,
                on_enqueue=self.outbox.notify if self.outbox else None,
            )
            if notify.rules or notify.escalation
            else None,
        )
        planner = self.incidents.notifications
        self.escalations = (
            CallEscalations(notify, dict(config.groups), self.store, planner)
            if planner is not None and notify.escalation
            else None
        )
        self.resolver = ThresholdResolver(config)
        self.evaluator = RuleEvaluator(
            config,
            self.fleet,
            DecisionWriter(self.store, self.incidents),
            calendar=self.calendar,
            resolver=self.resolver,
        )
        self._reload()
        self.replica = ReplicaSync(self.fleet, self.store)
        self.takeover = Takeover(self.fleet, self.store, self.replica)
        self.ingestor = ReportIngestor(
            self.fleet,
            self.store,
            self.evaluator,
            SeriesLimits(
                limits.max_series_per_host,
                limits.max_series,
                float(limits.max_interval),
                limits.max_checks_per_host,
            ),
            self.replica,
        )
        self.admission = IngestAdmission(config, self.ingestor, self.metrics, clock, self._reload)
        self._build_stages()

    @property
    def config(self) -> CollectorConfig:
        return self._config

    @config.setter
    def config(self, config: CollectorConfig) -> None:
        """Swap the config of a running service (tests and tools): the stages that read it at
        each call follow, as they did when they were methods of this class."""
        self._config = config
        self.admission.config = config
        self._build_stages()

    def _build_stages(self) -> None:
        """The stages that read the service's config at each call."""
        self.service_watch = ServiceWatch(
            self._config, self.fleet, self.calendar.silenced, self.clock
        )
        if self._config.services:
            self.service_watch.restore(self.store.last_service_states())
        self.status_messages = StatusMessages(
            self.store,
            frozenset(self._config.services),
            self.clock,
            changed=lambda: self.status_page.clear() if self.status_page is not None else None,
        )
        if self.metrics.fleet is not None:
            self.metrics.fleet.services = self.service_watch
        if self._config.services:
            self.incidents.services_of = self.service_watch.call_services
        self.ticker = EvaluationTick(
            config=self._config,
            store=self.store,
            fleet=self.fleet,
            evaluator=self.evaluator,
            calendar=self.calendar,
            replica=self.replica,
            failures=self.ingest_metrics.evaluation_failures,
            clock=self.clock,
            reload=self._reload,
            flush_storms=self.incidents.flush_storms,
            services=self.service_watch,
            take_over=self.takeover.slices,
            service_calls=self._follow_service_calls if self._config.services else None,
            escalate=self.escalations.steps if self.escalations is not None else None,
        )
        self.by_hand = CallsByHand(
            config=self._config,
            store=self.store,
            fleet=self.fleet,
            replica=self.replica,
            counters=self.counters,
            timings=self.metrics.calls,
            clock=self.clock,
            notifications=self.incidents.notifications,
        )
        self.retiring = HostRetirements(
            store=self.store,
            fleet=self.fleet,
            replica=self.replica,
            incidents=self.incidents,
            clock=self.clock,
            forget_metrics=self._forget_metrics,
        )
        self.silencing = Silences(
            self._config,
            self.store,
            self.calendar,
            self.clock,
            self.tick,
            self.fleet.hosts.keys,
        )
        self.reader = FleetReader(
            config=self._config,
            fleet=self.fleet,
            evaluator=self.evaluator,
            resolver=self.resolver,
            calendar=self.calendar,
            clock=self.clock,
        )

    def _follow_service_calls(self, now: float) -> None:
        """Open, update or resolve each service's own call from the states of this tick."""
        watch = self.service_watch
        states = self.fleet.states

        def call_of(host: str, rule: str, labels_key: str) -> int | None:
            state = states.get((rule, host, labels_key))
            return state.call_id if state is not None else None

        self.incidents.follow_services(
            watch.model.services, watch.statuses, watch.since, call_of, now
        )

    def start(self) -> None:
        """Start background delivery to help desks (when any are configured)."""
        if self.outbox is not None:
            self.outbox.start()
            # Probe the help desks read-only and log what is wrong (issue 20), off the
            # start path: a slow desk must not hold the collector up.
            import threading

            from collector.sinks.selfcheck import check_and_log

            self.sink_check = threading.Thread(
                target=check_and_log,
                # The mail servers of notification channels too (log in, send nothing).
                args=(
                    {
                        **self.sinks,
                        **{
                            f"notify:{n}": c
                            for n, c in self.channels.items()
                            if hasattr(c, "check")
                        },
                    },
                ),
                name="sink-self-check",
                daemon=True,
            )
            self.sink_check.start()

    def close(self) -> None:
        self.limits.close()
        self._keep_steps_in_progress()
        if self.outbox is not None:
            self.outbox.stop()
            if self._outbox_store is not self.store and self._outbox_store is not None:
                self._outbox_store.close()
        self.store.close()

    def _keep_steps_in_progress(self) -> None:
        """Store the graph history's steps in progress: a restart loses no step."""
        steps = self.fleet.steps.close_all()
        if not steps:
            return
        try:
            with self.store.transaction():
                self.store.add_steps(steps)
        except Exception:  # the store may be what failed: stopping goes on
            log.exception("could not store %d steps of graph history at stop", len(steps))

    def _reload(self) -> None:
        """Rebuild the in-memory view from the store: at start, and after a failure."""
        now = self.clock()
        span = self.evaluator.history_span
        self.fleet.reload(self.store, now, now - span if span else None)
        if self.metrics.fleet is not None:
            self.metrics.fleet.warm()  # the first scrape after a start only joins text
        settle_garbage_collector()

    def _forget_metrics(self, host: str) -> None:
        """Drop a retired host's lines from /metrics now, not at the next scrape."""
        if self.metrics.fleet is not None:
            self.metrics.fleet.refresh(host)

    # -- the stages, as the API, the console and the CLI call them ------------------------------

    def authenticate(self, authorization: str | None, *, client: str | None) -> str:
        """The host an agent's bearer token names (see Credentials.agent)."""
        return self.credentials.agent(authorization, client=client)

    def authenticate_operator(
        self, authorization: str | None, *, change: bool = True, client: str | None
    ) -> str:
        """The operator a bearer token names (see Credentials.operator)."""
        return self.credentials.operator(authorization, change=change, client=client)

    def ingest(self, token_host: str, report: Report, started: float | None = None) -> IngestResult:
        """Ingest one validated report (see IngestAdmission.ingest)."""
        return self.admission.ingest(token_host, report, started)

    def ingest_many(
        self, items: Sequence[tuple[str, Report, float | None]]
    ) -> list[IngestResult | Exception]:
        """Ingest reports of distinct hosts together (see IngestAdmission.ingest_many)."""
        return self.admission.ingest_many(items)

    def tick(self) -> None:
        """Evaluate time-based rules now, all at once (tests and tools; the API uses slices)."""
        self.ticker.tick()

    @property
    def status_page(self) -> Any:
        """The status page's renderer (how often it rendered, its cache), once the app is built."""
        return None if self.status_answers is None else self.status_answers.page

    def tick_slices(self, slice_seconds: float = 0.01) -> Iterator[None]:
        """Evaluate time-based rules, yielding every `slice_seconds` of work."""
        return self.ticker.tick_slices(slice_seconds)

    def audit(
        self, actor: str, action: str, target: str, detail: str = "", via: str = "api"
    ) -> None:
        """Record a change a person made (see CallsByHand.audit)."""
        self.by_hand.audit(actor, action, target, detail, via)

    def work_calls(
        self, request: BulkRequest, actor: str, via: str = "api"
    ) -> Iterator[BulkOutcome]:
        """Many calls at once, each its own audited action, one outcome after the other (see
        collector/incidents/bulk.py)."""
        return work_calls(self.by_hand, self.silencing, request, actor, via)

    # Handed on unchanged to the stage that does the work.
    reject = _handed_to("admission", IngestAdmission.reject)
    is_builtin_call = _handed_to("by_hand", CallsByHand.is_builtin_call)
    acknowledged_at = _handed_to("by_hand", CallsByHand.acknowledged_at)
    acknowledge_call = _handed_to("by_hand", CallsByHand.acknowledge_call)
    acknowledge_from_link = _handed_to("by_hand", CallsByHand.acknowledge_from_link)
    comment_call = _handed_to("by_hand", CallsByHand.comment_call)
    resolve_call = _handed_to("by_hand", CallsByHand.resolve_call)
    call_history = _handed_to("by_hand", CallsByHand.call_history)
    calls = _handed_to("by_hand", CallsByHand.calls)
    add_silence = _handed_to("silencing", Silences.add_silence)
    end_silence = _handed_to("silencing", Silences.end_silence)
    silences = _handed_to("silencing", Silences.silences)
    silence_reach = _handed_to("silencing", Silences.reach)
    add_confirmed_silence = _handed_to("silencing", Silences.add_confirmed_silence)
    hosts = _handed_to("reader", FleetReader.hosts)
    retired_hosts = _handed_to("reader", FleetReader.retired_hosts)
    retire_host = _handed_to("retiring", HostRetirements.retire)
    restore_host = _handed_to("retiring", HostRetirements.restore)
    retirements = _handed_to("retiring", HostRetirements.retirements)
    explain = _handed_to("reader", FleetReader.explain)
    rules = _handed_to("reader", FleetReader.rules)
    services = _handed_to("service_watch", ServiceWatch.services)
