"""Reports built in one line, as an agent would send them."""

from __future__ import annotations

from collections.abc import Callable

from checks.schema import SCHEMA_VERSION, CheckError, CheckRun, Measurement, Report


def measurement(
    check: str,
    name: str,
    value: float,
    now: float,
    *,
    unit: str = "",
    labels: dict[str, str] | None = None,
) -> Measurement:
    """One measurement taken at `now` (seconds since the epoch)."""
    return Measurement(
        check=check, name=name, value=value, unit=unit, labels=labels or {}, timestamp=now
    )


def check_run(
    check: str,
    now: float,
    interval: float = 60.0,
    *,
    kind: str | None = None,
    error: str | None = None,
    output: str | None = None,
) -> CheckRun:
    """One run of `check` (of type `kind`, by default its name) that took 10 ms at `now`."""
    return CheckRun(
        check=check,
        type=kind or check,
        interval_seconds=interval,
        started_at=now,
        duration_seconds=0.01,
        error=CheckError(kind="error", message=error) if error else None,
        output=output,
    )


def wire_report(
    host: str,
    seq: int,
    now: float,
    measurements: list[Measurement],
    runs: list[CheckRun] | None = None,
    *,
    interval: float = 60.0,
    boot_id: str = "boot-1",
) -> Report:
    """A report as the agent of `host` sends it at `now`."""
    return Report(
        schema_version=SCHEMA_VERSION,
        host=host,
        agent_version="test",
        boot_id=boot_id,
        seq=seq,
        sent_at=now,
        interval_seconds=interval,
        measurements=measurements,
        checks=runs or [],
    )


class Reporter:
    """Builds successive reports for one host, as an agent would."""

    def __init__(self, host: str, clock: Callable[[], float], interval: float = 60.0) -> None:
        self.host = host
        self.clock = clock
        self.interval = interval
        self.seq = 0
        self.boot_id = "boot-1"

    def report(
        self,
        values: dict[str, float] | None = None,
        *,
        labels: dict[str, str] | None = None,
        check: str = "filesystem",
        error: str | None = None,
        measurements: list[Measurement] | None = None,
        output: str | None = None,
    ) -> Report:
        now = self.clock()
        items = list(measurements or [])
        for name, value in (values or {}).items():
            labelled = labels if labels is not None else {"mountpoint": "/"}
            items.append(measurement(check, name, value, now, unit="ratio", labels=labelled))
        return self.compose(items, [self.run(check, error=error, output=output)])

    def run(self, check: str, **details: str | None) -> CheckRun:
        """A run of `check` now (`kind`, `error`, `output` as check_run takes them)."""
        return check_run(check, self.clock(), self.interval, **details)

    def compose(self, measurements: list[Measurement], runs: list[CheckRun]) -> Report:
        """The next report in this host's sequence, sent now."""
        self.seq += 1
        return wire_report(
            self.host,
            self.seq,
            self.clock(),
            measurements,
            runs,
            interval=self.interval,
            boot_id=self.boot_id,
        )
