"""Many hosts at once: a bounded pool of workers, live progress, and the final table."""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table

from agent.deploy.actions import Action, HostResult
from agent.deploy.inventory import DeployTarget
from agent.deploy.stop import StopRequest
from runwatch import units

_STYLE = {
    "changed": "yellow",
    "unchanged": "green",
    "ok": "green",
    "failed": "bold red",
    "interrupted": "bold magenta",
}


@dataclass
class _Row:
    step: str
    started: float
    result: HostResult | None = None


class ProgressBoard:
    """What each host is doing now, for rich's live display (thread-safe)."""

    def __init__(
        self,
        targets: list[DeployTarget],
        action: Action,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._action = action
        self._clock = clock
        self._lock = threading.Lock()
        self._rows = {t.name: _Row("waiting", clock()) for t in targets}

    def step(self, host: str, step: str) -> None:
        with self._lock:
            self._rows[host].step = step

    def done(self, result: HostResult) -> None:
        with self._lock:
            self._rows[result.host].result = result

    def abandoned(self, host: str) -> HostResult:
        """The result of a host deploy stopped waiting for: interrupted, its state unknown."""
        with self._lock:
            row = self._rows[host]
            step, seconds = row.step, self._clock() - row.started
        return HostResult(
            host,
            self._action,
            "interrupted",
            seconds,
            f"interrupted while {step}, and deploy stopped waiting for it to be put back: "
            f"`runwatch deploy status --hosts {host}` shows what is on the host",
        )

    def __rich__(self) -> RenderableType:
        table = Table(title=f"runwatch deploy {self._action}", title_justify="left")
        for column in ("host", "step", "seconds"):
            table.add_column(column)
        with self._lock:
            finished = 0
            for host, row in self._rows.items():
                if row.result is not None:
                    finished += 1
                    style = _STYLE[row.result.result]
                    table.add_row(
                        host,
                        f"[{style}]{row.result.result}[/]",
                        f"{row.result.duration_seconds:.1f}",
                    )
                else:
                    table.add_row(host, row.step, f"{self._clock() - row.started:.1f}")
            table.caption = f"{finished} of {len(self._rows)} done"
        return table


class DeployRunner:
    """Run one action on every target, at most `parallel` at a time; a failure stops no other.

    Ctrl-C (SIGINT) asks every host to stop: a host in the middle of its action is put back as
    it was, one not started is left alone. A second Ctrl-C stops waiting for that, and the hosts
    still busy are reported as interrupted in an unknown state.
    """

    def __init__(
        self,
        targets: list[DeployTarget],
        action: Action,
        work: Callable[[DeployTarget, Callable[[str], None]], HostResult],
        *,
        parallel: int,
        console: Console,
        stop: StopRequest,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.targets = targets
        self.action = action
        self._work = work
        self._parallel = max(1, parallel)
        self._console = console
        self._stop = stop
        self._clock = clock

    def run(self) -> list[HostResult]:
        board = ProgressBoard(self.targets, self.action, self._clock)
        results: dict[str, HostResult] = {}
        queue = list(reversed(self.targets))
        lock = threading.Lock()
        all_done = threading.Event()

        def worker() -> None:
            while True:
                with lock:
                    if not queue:
                        return
                    target = queue.pop()
                result = self._work(target, functools.partial(board.step, target.name))
                board.done(result)
                self._say(result)
                with lock:
                    results[target.name] = result
                    if len(results) == len(self.targets):
                        all_done.set()

        # Daemon threads: after a second Ctrl-C the process may exit while one still waits on a
        # host. A ThreadPoolExecutor would hold the exit until every host's step had ended.
        for n in range(min(self._parallel, len(self.targets))):
            threading.Thread(target=worker, name=f"deploy-{n}", daemon=True).start()
        with self._sigint_handled():
            try:
                if self._console.is_terminal:
                    with Live(board, console=self._console, refresh_per_second=4, transient=True):
                        self._wait(all_done)
                else:
                    self._wait(all_done)
            except KeyboardInterrupt:
                self._console.print(
                    "Ctrl-C again: no longer waiting for the hosts still busy", highlight=False
                )
        with lock:
            return [results.get(t.name) or board.abandoned(t.name) for t in self.targets]

    def _wait(self, all_done: threading.Event) -> None:
        announced = False
        while not all_done.wait(0.2):
            if self._stop.is_set() and not announced:
                announced = True
                self._console.print(
                    "Ctrl-C: stopping. Hosts in the middle of a step are put back as they "
                    "were (Ctrl-C again to stop waiting for that)",
                    highlight=False,
                    soft_wrap=True,
                )

    @contextlib.contextmanager
    def _sigint_handled(self) -> Iterator[None]:
        """Turn the first SIGINT into a stop request and the next into KeyboardInterrupt.

        Installed even where SIGINT was inherited as ignored (a job a script put in the
        background): whoever sends deploy SIGINT wants it to stop.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_sigint(signum: int, frame: FrameType | None) -> None:
            if self._stop.is_set():
                raise KeyboardInterrupt
            self._stop.set()

        before = signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, before)

    def _say(self, result: HostResult) -> None:
        """One line per finished host when no live display shows it."""
        if self._console.is_terminal:
            return
        took = units.duration(result.duration_seconds)
        line = f"{result.host}: {result.action} {result.result} in {took}"
        self._console.print(
            line + (f": {result.error}" if result.error else ""),
            highlight=False,
            soft_wrap=True,
        )


def results_table(results: list[HostResult], action: Action) -> Table:
    """The final table: host, action, result, duration, error, and what changed."""
    table = Table(title=f"runwatch deploy {action}", title_justify="left")
    table.add_column("host")
    table.add_column("action")
    table.add_column("result")
    table.add_column("duration", justify="right")
    table.add_column("error", overflow="fold")
    table.add_column("detail", overflow="fold")
    for r in results:
        detail = "; ".join(r.changes) if r.changes else r.detail
        table.add_row(
            r.host,
            r.action,
            f"[{_STYLE[r.result]}]{r.result}[/]",
            units.duration(r.duration_seconds),
            r.error or "",
            detail,
        )
    failed = sum(r.result == "failed" for r in results)
    interrupted = sum(r.result == "interrupted" for r in results)
    table.caption = f"{len(results)} host(s), {failed} failed" + (
        f", {interrupted} interrupted" if interrupted else ""
    )
    return table
