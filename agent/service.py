"""The agent: run checks, package what they found as reports, spool them, and ship them."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import time
from collections.abc import Callable
from pathlib import Path

from agent.config import SELF_CHECK, AgentConfig
from agent.exposition import LatestMeasurements, serve_metrics
from agent.notify import SystemdNotifier
from agent.runner import CheckRunner, Harvest
from agent.shipper import ReportSender, ReportShipper, SendResult
from agent.spool import Spool, SpoolStats
from checks.base import Check, CheckOptions
from checks.filemodes import make_private_dir, warn_if_exposed
from checks.registry import build_check
from checks.schema import SCHEMA_VERSION, CheckRun, Measurement, Report, encode
from checks.settings import ConfigError
from runwatch import __version__

log = logging.getLogger(__name__)

# The first report goes out this soon after start, so a new host shows up at once.
FIRST_REPORT_AFTER_SECONDS = 3.0
# The main loop sleeps at most this long: a backstop, since stop, reload and settled checks
# wake it through a pipe at once.
_MAX_SLEEP_SECONDS = 30.0
# A due report waits up to this long (or a quarter of the interval) for checks that are running
# or about to start, so it carries their fresh results, and the agent wakes once, not twice.
_REPORT_HOLD_SECONDS = 1.0
# How long a stopping agent gives the shipper to deliver what is pending (SIGTERM: exit in 5 s).
_FINAL_DELIVERY_SECONDS = 3.0


def build_runner(config: AgentConfig, on_settled: Callable[[], None] | None = None) -> CheckRunner:
    """Instantiate every configured check, wrapped in a runner."""

    def build(options: CheckOptions, timeout: float) -> Check:
        return build_check(
            options,
            timeout=timeout,
            state_dir=config.state_dir / "checks" / options.instance,
            # Checks of one backup repository share its cache (checks/backup.py).
            cache_root=config.state_dir / "repos",
        )

    return CheckRunner.from_options(
        config.checks, float(config.interval), build, on_settled=on_settled
    )


def build_sender(config: AgentConfig) -> ReportSender:
    """The HTTP client for the configured collector."""
    target = config.collector
    return ReportSender(target.url, target.token_file, float(target.timeout), target.ca_file)


class SelfMonitor:
    """The agent's own figures, added to every report under the check name `agent`."""

    def __init__(
        self,
        monotonic: Callable[[], float] = time.monotonic,
        statm: Path = Path("/proc/self/statm"),
    ) -> None:
        self._monotonic = monotonic
        self._started = monotonic()
        self._statm = statm
        self._page_bytes = os.sysconf("SC_PAGE_SIZE")
        self._durations: dict[str, float] = {}
        self._timeouts: dict[str, int] = {}
        self._rss_unreadable = False

    def observe(self, runs: list[CheckRun]) -> None:
        """Note each check's last duration and count its timeouts (since the agent started)."""
        for run in runs:
            kind = run.error.kind if run.error else None
            if kind == "skipped":
                continue  # still hung: that run's timeout is already counted
            self._durations[run.check] = run.duration_seconds
            if kind == "timeout":
                self._timeouts[run.check] = self._timeouts.get(run.check, 0) + 1

    def measurements(self, checks: list[str], spool: SpoolStats, now: float) -> list[Measurement]:
        """The figures for one report; `checks` are the configured check names."""

        def figure(
            name: str, value: float, unit: str, labels: dict[str, str] | None = None
        ) -> Measurement:
            return Measurement(
                check=SELF_CHECK,
                name=name,
                value=float(value),
                unit=unit,
                labels=labels or {},
                timestamp=now,
            )

        out = [
            figure("agent_cpu_seconds", time.process_time(), "seconds"),
            figure("agent_uptime_seconds", round(self._monotonic() - self._started, 3), "seconds"),
            figure("agent_spool_reports", spool.reports, ""),
            figure("agent_spool_bytes", spool.bytes, "bytes"),
            figure("agent_spool_dropped", spool.dropped, ""),
        ]
        rss = self._rss_bytes()
        if rss is not None:
            out.append(figure("agent_rss_bytes", rss, "bytes"))
        for name in checks:
            labels = {"check_name": name}
            if name in self._durations:
                out.append(
                    figure("agent_check_duration_seconds", self._durations[name], "seconds", labels)
                )
            out.append(figure("agent_check_timeouts", self._timeouts.get(name, 0), "", labels))
        return out

    def _rss_bytes(self) -> int | None:
        # One small read of /proc/self/statm: cheaper than psutil, and no extra import.
        try:
            return int(self._statm.read_bytes().split()[1]) * self._page_bytes
        except (OSError, IndexError, ValueError) as exc:
            if not self._rss_unreadable:
                log.warning(
                    "cannot read %s (%s); agent_rss_bytes is not reported", self._statm, exc
                )
                self._rss_unreadable = True
            return None


class Agent:
    """One agent process: checks on their cadence, a report every interval, a shipper thread.

    `stop()` and `request_reload()` only set a flag and write a byte to a pipe, so signal
    handlers may call them; the main loop, asleep on that pipe between due times, acts at once.
    """

    def __init__(
        self,
        config: AgentConfig,
        clock: Callable[[], float] = time.time,
        *,
        load_config: Callable[[], AgentConfig] | None = None,
        notifier: SystemdNotifier | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._clock = clock
        self._monotonic = monotonic
        self._load_config = load_config
        self._notifier = notifier or SystemdNotifier({})
        self._wake: tuple[int, int] | None = None  # the main loop's wake-up pipe, while it runs
        # Before the checks and the spool make anything in it: reports may hold private data.
        make_private_dir(config.state_dir)
        warn_if_exposed([config.state_dir, config.state_dir / "spool"], log)
        self.runner = build_runner(config, self._poke)
        self.spool = Spool(
            config.state_dir / "spool",
            config.spool.max_bytes,
            config.spool.max_reports,
            float(config.spool.max_age),
            clock,
        )
        self._sender = build_sender(config)
        self.shipper = ReportShipper(
            self.spool,
            self._send,
            replay_gap_seconds=1.0 / config.spool.replay_rate,
            replay_jitter_seconds=float(config.spool.replay_jitter),
        )
        self.monitor = SelfMonitor(monotonic)
        self.latest = LatestMeasurements()  # for the optional local /metrics
        self._carried = Harvest()  # collected by the runner a reload replaced
        self._stop_requested = False
        self._reload_requested = False

    def _send(self, body: bytes) -> SendResult:
        # Through the agent, so a reload can point the shipper at a new collector or token.
        return self._sender.send(body)

    def make_report(self) -> Report:
        """Package everything collected since the previous report, and spool it."""
        harvest = self.runner.drain()
        if self._carried.runs or self._carried.measurements:
            carried, self._carried = self._carried, Harvest()
            harvest = Harvest(
                carried.measurements + harvest.measurements, carried.runs + harvest.runs
            )
        self.monitor.observe(harvest.runs)
        now = self._clock()
        own = self.monitor.measurements(
            [c.instance for c in self.config.checks], self.spool.stats(), now
        )
        report = Report(
            schema_version=SCHEMA_VERSION,
            host=self.config.host_name,
            agent_version=__version__,
            boot_id=self.spool.boot_id,
            seq=self.spool.next_seq(),
            sent_at=now,
            interval_seconds=float(self.config.interval),
            measurements=harvest.measurements + own,
            checks=harvest.runs,
            labels=dict(self.config.labels),
        )
        self.spool.put(report.seq, encode(report))
        self.shipper.notify()
        if self.config.metrics is not None:
            self.latest.update(report.measurements)
        return report

    def apply(self, config: AgentConfig) -> None:
        """Run on a new, validated config: new checks and collector; the spool stays."""
        if config.state_dir != self.config.state_dir:
            raise ConfigError(
                "state_dir",
                f"changed from {self.config.state_dir}; a new "
                "state_dir takes a restart of the agent",
            )
        runner = build_runner(config, self._poke)
        self._sender = build_sender(config)
        self.spool.set_bounds(
            config.spool.max_bytes, config.spool.max_reports, float(config.spool.max_age)
        )
        self.shipper.replay_gap_seconds = 1.0 / config.spool.replay_rate
        self.shipper.replay_jitter_seconds = float(config.spool.replay_jitter)
        # What the old checks finished goes out with the next report; runs still going are
        # left to finish unseen.
        finished = self.runner.drain()
        self._carried.measurements.extend(finished.measurements)
        self._carried.runs.extend(finished.runs)
        self.runner, self.config = runner, config
        runner.start_all()
        log.info(
            "config reloaded: host %s, %d checks, reporting to %s every %gs",
            config.host_name,
            runner.check_count,
            config.collector.url,
            float(config.interval),
        )

    def _reload(self) -> None:
        if self._load_config is None:
            log.warning("reload requested, but this agent has no config file to reload")
            return
        self._notifier.reloading()
        try:
            self.apply(self._load_config())
        except ConfigError as exc:
            log.error("config reload failed; still running the previous config. %s", exc)
        except Exception:
            # A check that cannot be built must not take the running agent down with it.
            log.exception("config reload failed; still running the previous config")
        finally:
            self._notifier.ready()

    def run(self) -> None:
        """Run until `stop()`; then spool a final report and give the shipper a moment."""
        log.info(
            "agent for host %s: %d checks, reporting to %s every %gs",
            self.config.host_name,
            self.runner.check_count,
            self.config.collector.url,
            float(self.config.interval),
        )
        read_end, write_end = os.pipe()
        for fd in (read_end, write_end):
            os.set_blocking(fd, False)
        self._wake = (read_end, write_end)
        try:
            self._run_loop()
        finally:
            self._wake = None
            os.close(read_end)
            os.close(write_end)

    def _run_loop(self) -> None:
        self.shipper.start()
        self.runner.start_all()
        metrics_server = None
        if self.config.metrics is not None:
            metrics_server = serve_metrics(
                self.latest, self.config.host_name, self.config.metrics.listen
            )
            log.info("local metrics on http://%s/metrics", self.config.metrics.listen)
        self._notifier.ready()
        started = self._monotonic()
        next_report = started + min(FIRST_REPORT_AFTER_SECONDS, float(self.config.interval))
        while not self._stop_requested:
            if self._reload_requested:
                self._reload_requested = False
                self._reload()
                next_report = min(next_report, self._monotonic() + float(self.config.interval))
            self.runner.run_pending()
            now = self._monotonic()
            if now >= next_report and not self._hold_report(now - next_report):
                self.make_report()
                # Reports keep to the checks' cadence, which started with them.
                interval = float(self.config.interval)
                next_report = started + interval * (1 + (now - started) // interval)
                next_report = max(next_report, now + min(1.0, interval / 2))
            self._notifier.watchdog()
            self._sleep(next_report)
        self._notifier.stopping()
        self.make_report()
        self.shipper.stop(timeout=_FINAL_DELIVERY_SECONDS)
        self.spool.close()
        if metrics_server is not None:
            metrics_server.shutdown()
        self._notifier.close()

    def _report_hold(self) -> float:
        return min(_REPORT_HOLD_SECONDS, float(self.config.interval) / 4)

    def _hold_report(self, overdue: float) -> bool:
        """Whether a due report should wait for checks that run now or are about to start."""
        if overdue >= self._report_hold():
            return False
        return self.runner.busy() or self.runner.idle_seconds() < self._report_hold()

    def _sleep(self, next_report: float) -> None:
        """Sleep until a check is due, a report is due, or something wakes the loop early."""
        # schedule dates jobs by the wall clock: wake just after one is due, not just before.
        until_check = self.runner.idle_seconds() + 0.002
        until_report = next_report - self._monotonic()
        if until_report <= 0:  # due, and held for the checks: the settled checks wake us
            until_report += self._report_hold()
        elif until_check - self._report_hold() <= until_report <= until_check:
            until_report = until_check  # the report would be held for these checks anyway
        waits = [until_check, until_report, _MAX_SLEEP_SECONDS]
        attention = self.runner.attention_seconds()
        if attention is not None:
            waits.append(attention)
        if self._notifier.watchdog_interval:
            waits.append(self._notifier.watchdog_interval)
        # A floor keeps a clock step or a due job that schedule has not yet moved from spinning.
        assert self._wake is not None
        readable, _, _ = select.select([self._wake[0]], [], [], max(0.01, min(waits)))
        if readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake[0], 512):
                    pass

    def _poke(self) -> None:
        """Wake the main loop (from a signal handler, or a worker whose checks have settled)."""
        wake = self._wake
        if wake is not None:
            with contextlib.suppress(OSError):  # full of wake-ups already, or just closed
                os.write(wake[1], b".")

    def stop(self) -> None:
        """Ask the main loop to spool a final report and stop (safe in a signal handler)."""
        self._stop_requested = True
        self._poke()

    def request_reload(self) -> None:
        """Ask the main loop to reload the config file (safe in a signal handler)."""
        self._reload_requested = True
        self._poke()
