"""What the restic and borg checks share: their cache directory, time budget and run figures.

In an agent, checks of one repository share one cache directory, `<cache_root>/<tool>-<hash of
the repository location>`: three checks of a repository (by host, by tag, by path) build one
cache, not three. They take turns: a check holds an flock on `lock` in that directory while it
runs. borg locks its cache itself, but a second borg waits only a second for that lock and then
fails; restic does not lock its cache at all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from checks.base import CheckFailed, Clock, OptionsT, ProbeBase, measurements_of
from checks.schema import Measurement

# The commands of one run end by this share of the runner's timeout, which leaves time to hand
# in what was measured before the runner gives up.
_COMMANDS_SHARE = 0.9
# How often a check waiting for its turn at a shared cache tries the lock again.
_LOCK_POLL_SECONDS = 0.05


def repository_dir(root: Path, tool: str, repository: str) -> Path:
    """Where the checks of one repository keep `tool`'s cache: root/<tool>-<location hash>."""
    import hashlib

    return root / f"{tool}-{hashlib.sha256(repository.encode()).hexdigest()[:16]}"


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


class BackupProbe(ProbeBase[OptionsT]):
    """A check that probes a backup repository with the tool's commands (restic, borg).

    `cache_root` is where the agent keeps each repository's cache, shared by the checks of
    that repository (see the module's docstring); without it, `state_dir` is this check's own.
    The check's `_labels`, set in its _prepare, label every figure of a run. Its options have
    a `repository`.
    """

    def __init__(
        self,
        options: OptionsT,
        *,
        timeout: float | None = None,
        state_dir: Path | None = None,
        cache_root: Path | None = None,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self._state_dir = state_dir
        repository = str(getattr(options, "repository", ""))
        self._shared_dir = (
            repository_dir(cache_root, str(options.type), repository)
            if cache_root is not None
            else None
        )
        super().__init__(options, timeout=timeout, clock=clock, monotonic=monotonic)

    def _own_dir(self, configured: str | None, default_name: str) -> Path | None:
        """The tool's directory: as configured, else `default_name` in the repository's shared
        directory, else in this check's state dir, if any."""
        if configured is not None:
            self._shared_dir = None  # the user's own directory: not ours to lock
            return Path(configured)
        if self._shared_dir is not None:
            return self._shared_dir / default_name
        return self._state_dir / default_name if self._state_dir is not None else None

    @contextmanager
    def _turn(self, run: ProbeRun) -> Iterator[None]:
        """Hold the repository's shared directory for this run, waiting until its deadline."""
        if self._shared_dir is None:
            yield
            return
        import fcntl
        import os

        try:
            self._shared_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self._shared_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise run.failed(
                CheckFailed(
                    f"cannot use the cache directory {self._shared_dir}: "
                    f"{exc.strerror or exc}; give the agent write access to its state_dir"
                )
            ) from None
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if self._monotonic() >= run.deadline:
                        raise run.failed(
                            CheckFailed(
                                f"another check of repository {self._labels['repo']} held its "
                                "cache for this run's whole timeout; give the checks of one "
                                "repository different intervals, or a longer timeout"
                            )
                        ) from None
                    time.sleep(_LOCK_POLL_SECONDS)
            yield
        finally:
            os.close(fd)  # releases the lock

    @contextmanager
    def _parsing(self, command: str, expected: str) -> Iterator[None]:
        """Turn output of `command` that is not as parsed into CheckFailed asking `expected`."""
        try:
            yield
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckFailed(
                f"cannot parse `{command}` for repository {self._labels['repo']}: {exc}; "
                f"is {expected}?"
            ) from None

    def _start_run(self) -> ProbeRun:
        """Begin one run, whose commands end by its deadline."""
        return ProbeRun(
            self._options.instance,
            self._labels,
            self._timeout * _COMMANDS_SHARE,
            clock=self._clock,
            monotonic=self._monotonic,
        )
