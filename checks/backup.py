"""What the restic and borg checks share: their commands' time budget and one run's figures."""

from __future__ import annotations

from checks.base import CheckFailed, CheckOptions, Clock, measurements_of
from checks.schema import Measurement

# The commands of one run end by this share of the runner's timeout, which leaves time to hand
# in what was measured before the runner gives up.
_COMMANDS_SHARE = 0.9


def commands_budget(options: CheckOptions, timeout: float | None) -> float:
    """Seconds the commands of one run may take, out of the runner's `timeout` for it."""
    if timeout is None:
        timeout = options.timeout_seconds()
    return timeout * _COMMANDS_SHARE


class ProbeRun:
    """The figures of one probe of a backup repository, success or not.

    Every run reports `backup_probe_success` and `backup_probe_duration_seconds`, also when it
    fails (as the measurements of its CheckFailed), so a probe that never worked still has a
    series to be UNKNOWN on.
    """

    def __init__(
        self, check: str, labels: dict[str, str], budget: float, *, clock: Clock, monotonic: Clock
    ) -> None:
        self._check = check
        self._labels = labels
        self._monotonic = monotonic
        self._started = monotonic()
        self.deadline = self._started + budget
        self.now = clock()
        self.figures: list[tuple[str, float, str]] = []

    def snapshots(self, count: int, newest_time: float | None) -> None:
        """Add the count of snapshots (archives) and, if any, the newest one's time and age."""
        self.figures.append(("backup_snapshots", count, ""))
        if newest_time is not None:
            self.figures.append(("backup_last_snapshot_timestamp_seconds", newest_time, "seconds"))
            self.figures.append(
                ("backup_last_snapshot_age_seconds", self.now - newest_time, "seconds")
            )

    def finish(self, success: bool) -> list[Measurement]:
        """Return the run's measurements, ending with its success and duration."""
        self.figures.append(("backup_probe_success", 1.0 if success else 0.0, ""))
        self.figures.append(
            ("backup_probe_duration_seconds", self._monotonic() - self._started, "seconds")
        )
        return measurements_of(self._check, self.figures, self._labels, self.now)

    def failed(self, exc: CheckFailed) -> CheckFailed:
        """The failure to raise for `exc`, carrying the run's measurements."""
        return CheckFailed(str(exc), measurements=self.finish(False))
