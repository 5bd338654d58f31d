"""Reports built in one line, as an agent would send them."""

from __future__ import annotations

from checks.schema import SCHEMA_VERSION, CheckError, CheckRun, Measurement, Report
from tests.helpers.clock import FakeClock


class Reporter:
    """Builds successive reports for one host, as an agent would."""

    def __init__(self, host: str, clock: FakeClock, interval: float = 60.0) -> None:
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
        self.seq += 1
        now = self.clock()
        items = list(measurements or [])
        for name, value in (values or {}).items():
            items.append(
                Measurement(
                    check=check,
                    name=name,
                    value=value,
                    unit="ratio",
                    labels=labels if labels is not None else {"mountpoint": "/"},
                    timestamp=now,
                )
            )
        runs = [
            CheckRun(
                check=check,
                type=check,
                interval_seconds=self.interval,
                started_at=now,
                duration_seconds=0.01,
                error=CheckError(kind="error", message=error) if error else None,
                output=output,
            )
        ]
        return Report(
            schema_version=SCHEMA_VERSION,
            host=self.host,
            agent_version="test",
            boot_id=self.boot_id,
            seq=self.seq,
            sent_at=now,
            interval_seconds=self.interval,
            measurements=items,
            checks=runs,
        )
