"""The agent: run checks, package what they found as reports, spool them, and ship them."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from agent.config import AgentConfig
from agent.runner import CheckRunner
from agent.shipper import ReportSender, ReportShipper
from agent.spool import Spool
from checks.registry import build_check
from checks.schema import SCHEMA_VERSION, Report, encode
from runwatch import __version__

log = logging.getLogger(__name__)

# The first report goes out this soon after start, so a new host shows up at once.
FIRST_REPORT_AFTER_SECONDS = 3.0


def build_runner(config: AgentConfig) -> CheckRunner:
    """Instantiate every configured check, wrapped in a runner."""
    checks = [(options, build_check(options, state_dir=config.state_dir / "checks" /
                                    options.instance)) for options in config.checks]
    return CheckRunner(checks, float(config.interval))


class Agent:
    """One agent process: checks on their cadence, a report every interval, a shipper thread."""

    def __init__(self, config: AgentConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._clock = clock
        self.runner = build_runner(config)
        self.spool = Spool(config.state_dir / "spool", config.spool.max_bytes,
                           config.spool.max_reports)
        sender = ReportSender(config.collector.url, config.collector.token_file,
                              float(config.collector.timeout), config.collector.ca_file)
        self.shipper = ReportShipper(self.spool, sender.send)
        self._stop = threading.Event()

    def make_report(self) -> Report:
        """Package everything collected since the previous report, and spool it."""
        harvest = self.runner.drain()
        report = Report(
            schema_version=SCHEMA_VERSION,
            host=self.config.host_name,
            agent_version=__version__,
            boot_id=self.spool.boot_id,
            seq=self.spool.next_seq(),
            sent_at=self._clock(),
            interval_seconds=float(self.config.interval),
            measurements=harvest.measurements,
            checks=harvest.runs,
        )
        self.spool.put(report.seq, encode(report))
        self.shipper.notify()
        return report

    def run(self) -> None:
        """Run until `stop()`; then spool what was collected and give the shipper a moment."""
        log.info("agent for host %s: %d checks, reporting to %s every %gs",
                 self.config.host_name, self.runner.check_count, self.config.collector.url,
                 float(self.config.interval))
        self.shipper.start()
        self.runner.start_all()
        interval = float(self.config.interval)
        next_report = time.monotonic() + min(FIRST_REPORT_AFTER_SECONDS, interval)
        while not self._stop.is_set():
            self.runner.run_pending()
            now = time.monotonic()
            if now >= next_report:
                self.make_report()
                next_report = max(next_report + interval, now + 1.0)
            wait = min(self.runner.idle_seconds(), next_report - time.monotonic(), 0.5)
            self._stop.wait(max(0.05, wait))
        self.make_report()
        self.shipper.stop(timeout=3.0)

    def stop(self) -> None:
        self._stop.set()
