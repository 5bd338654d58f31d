"""What can go wrong on one host, as data: the step, and a message that says what to change."""

from __future__ import annotations


class DeployError(Exception):
    """A deploy step failed on a host; the message is for the admin and never holds a token."""


class ConnectError(DeployError):
    """The host could not be reached or refused our key."""


class HostKeyError(ConnectError):
    """The host's key is unknown to known_hosts, or differs from the key recorded there."""

    def __init__(self, message: str, *, host: str, offered: str, known: str | None) -> None:
        super().__init__(message)
        self.host = host
        self.offered = offered  # SHA256 fingerprint of the key the host showed
        self.known = known  # SHA256 fingerprint recorded in known_hosts, None if unknown


class RemoteCommandError(DeployError):
    """A command on the host exited non-zero."""

    def __init__(self, message: str, *, what: str, exit_status: int, stderr: str) -> None:
        super().__init__(message)
        self.what = what
        self.exit_status = exit_status
        self.stderr = stderr


class CollectorError(DeployError):
    """The collector's API refused or could not be reached."""

    def __init__(self, message: str, *, url: str, status: int | None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class Interrupted(DeployError):
    """The operator stopped the run (Ctrl-C) while this host was running `what`."""

    def __init__(self, what: str) -> None:
        super().__init__(f"interrupted while running: {what}")
        self.what = what
