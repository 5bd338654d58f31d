"""Chat and paging services through apprise: one URL per channel (Slack, Teams, Matrix, ntfy, …).

apprise says only whether a message went, not why not; every failure is retried by the outbox
with backoff, and apprise's own words (its log, redacted) become the outbox entry's last error.
apprise loads with the first channel built or checked, never with a config that has none.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from collector.notify.config import AppriseChannelConfig
from collector.notify.message import Message
from collector.sinks.contract import SinkError
from collector.sinks.transport import Redactor

if TYPE_CHECKING:
    import apprise

# A token in a URL's path (Slack's three, Telegram's bot token) is long; words are not.
_TOKEN_CHARS = 12


def url_redactor(url: str, secret: bool) -> Redactor:
    """A Redactor for an apprise URL: its password and query tokens (the help-desk sinks'
    rules), and for a URL kept as a secret also the whole URL and its long path parts."""
    redactor = Redactor()
    redactor.add_url(url)
    if secret:
        redactor.add(url)
        parts = urlsplit(url)
        for part in [parts.netloc.rpartition("@")[0], *parts.path.split("/")]:
            if len(part) >= _TOKEN_CHARS:
                redactor.add(part)
    return redactor


def _service(url: str, timeout: float) -> apprise.Apprise:
    import apprise

    asset = apprise.AppriseAsset(storage_mode="memory")
    plugin = apprise.Apprise.instantiate(url, asset=asset)
    if plugin is None:
        raise SinkError("apprise: the URL names no service apprise knows", retryable=False)
    plugin.socket_connect_timeout = timeout
    plugin.socket_read_timeout = timeout
    service = apprise.Apprise(asset=asset)
    service.add(plugin)
    return service


def parse_url(url: str) -> str | None:
    """Why apprise cannot use `url`, or None when it can (config load)."""
    import apprise

    _quiet_apprise()
    if apprise.Apprise.instantiate(url, asset=apprise.AppriseAsset(storage_mode="memory")):
        return None
    scheme = url.partition("://")[0]
    return f"apprise cannot use this URL (scheme {scheme}://): see apprise's list of services"


def _quiet_apprise() -> None:
    """apprise logs what it sends (at DEBUG, with the tokens in the headers) and why it failed:
    its records are never made below WARNING, and those stay with the result it returns, whose
    words go into our (redacted) error."""
    logger = logging.getLogger("apprise")
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    pool = logging.getLogger("urllib3.connectionpool")  # what apprise's requests log at DEBUG
    if not any(isinstance(f, _NoQuery) for f in pool.filters):
        pool.addFilter(_NoQuery())


class _NoQuery(logging.Filter):
    """urllib3's request lines without their query strings, where tokens travel."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                f"{a.partition('?')[0]}?…" if isinstance(a, str) and "?" in a else a
                for a in record.args
            )
        return True


_TYPES = {
    "open": "failure",
    "severity": "warning",
    "escalation": "failure",
    "update": "warning",
    "digest": "warning",
    "resolve": "success",
}


class AppriseChannel:
    """Send a notification's title and body to one apprise URL."""

    def __init__(self, name: str, config: AppriseChannelConfig) -> None:
        self.name = name
        self._config = config
        _quiet_apprise()

    def send(self, message: Message) -> None:
        """Send; raise SinkError (retryable: apprise cannot tell a lasting failure) with the
        redacted reason."""
        url = self._config.read_url()  # read at each delivery: a rotated secret applies
        redact = url_redactor(url, secret=not isinstance(self._config.url, str))
        try:
            service = _service(url, float(self._config.timeout))
            kind = "failure" if message.severity == "CRITICAL" else _TYPES[message.event]
            if message.event == "resolve":
                kind = "success"
            result: Any = service.notify(body=message.body, title=message.subject, notify_type=kind)
        except SinkError as exc:
            raise SinkError(redact(str(exc)), retryable=exc.retryable) from None
        except Exception as exc:  # noqa: BLE001 - a plugin may raise anything
            raise SinkError(
                redact(f"{self.name}: apprise failed: {type(exc).__name__}: {exc}"),
                retryable=True,
            ) from None
        if bool(result):
            return
        said = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR")]
        reason = " ".join(" / ".join(said[-2:]).split())[:300] or "no reason given"
        raise SinkError(redact(f"{self.name}: not delivered: {reason}"), retryable=True)
