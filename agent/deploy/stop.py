"""Ctrl-C as data: one request to stop, set by the main thread and seen by every host's work."""

from __future__ import annotations

import threading

from agent.deploy.errors import Interrupted


class StopRequest:
    """Set once when the operator asks the run to stop; every wait below gives way to it."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self, what: str) -> None:
        """Raise Interrupted (naming `what`) if a stop was asked for."""
        if self._event.is_set():
            raise Interrupted(what)

    def sleep(self, seconds: float, what: str) -> None:
        """Sleep, but raise Interrupted as soon as a stop is asked for."""
        if self._event.wait(seconds):
            raise Interrupted(what)
