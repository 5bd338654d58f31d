"""Many hosts at once: a bounded pool of workers, live progress, and the final table."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rich.console import Console, RenderableType
from rich.live import Live
from rich.table import Table

from agent.deploy.actions import Action, HostResult
from agent.deploy.inventory import DeployTarget

_STYLE = {"changed": "yellow", "unchanged": "green", "ok": "green", "failed": "bold red"}


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
    """Run one action on every target, at most `parallel` at a time; a failure stops no other."""

    def __init__(
        self,
        targets: list[DeployTarget],
        action: Action,
        work: Callable[[DeployTarget, Callable[[str], None]], HostResult],
        *,
        parallel: int,
        console: Console,
    ) -> None:
        self.targets = targets
        self.action = action
        self._work = work
        self._parallel = max(1, parallel)
        self._console = console

    def run(self) -> list[HostResult]:
        board = ProgressBoard(self.targets, self.action)

        def one(target: DeployTarget) -> HostResult:
            result = self._work(target, lambda step: board.step(target.name, step))
            board.done(result)
            if not self._console.is_terminal:
                line = (
                    f"{result.host}: {result.action} {result.result} in "
                    f"{result.duration_seconds:.1f}s"
                )
                self._console.print(
                    line + (f": {result.error}" if result.error else ""),
                    highlight=False,
                    soft_wrap=True,
                )
            return result

        with ThreadPoolExecutor(self._parallel, thread_name_prefix="deploy") as pool:
            if self._console.is_terminal:
                with Live(board, console=self._console, refresh_per_second=4, transient=True):
                    return list(pool.map(one, self.targets))
            return list(pool.map(one, self.targets))


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
            f"{r.duration_seconds:.1f}s",
            r.error or "",
            detail,
        )
    failed = sum(r.result == "failed" for r in results)
    table.caption = f"{len(results)} host(s), {failed} failed"
    return table
