"""Bounds on slow and surplus clients, in uvicorn's HTTP protocols (h11 and httptools).

uvicorn times out only an idle kept-alive connection: one that sends its request a byte at a
time (slow loris), or never finishes its body, is held until the fd limit. This protocol gives
each request a deadline for its headers and one for its body, and refuses connections past a
cap with a 503 at once, so that slow clients cannot crowd out the agents.

A request that arrives whole costs two checks of the parser's state and no timer; one that comes
in pieces, or with a body still to come, costs a timer armed and cancelled (uvicorn arms one
per response for keep-alive already); each connection costs one more.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: server.http falls back to h11
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

_REFUSAL_BODY = b"too many connections: retry later\n"
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"retry-after: 5\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)
# A refused client's request is read and dropped this long, so that it sees the 503.
_LINGER_SECONDS = 2.0


# What the client is sending now, as the deadlines see it.
_HEADERS, _BODY, _DONE = 0, 1, 2


class LimitedConnection:
    """Header and body read deadlines and a connection cap, for a uvicorn HTTP protocol.

    Mixed in before the protocol class; `_phase()` says what the parser waits for.
    """

    header_timeout_seconds = 10.0
    body_timeout_seconds = 30.0
    max_connections = 4096
    # Set by the protocol class this is mixed into.
    connections: set[Any]
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._reading_body = False
        self._refused: asyncio.Transport | None = None

    @classmethod
    def configured(
        cls, header_timeout_seconds: float, body_timeout_seconds: float, max_connections: int
    ) -> type[Any]:
        """A subclass with these limits, for uvicorn.Config(http=...)."""
        return type(
            cls.__name__,
            (cls,),
            {
                "header_timeout_seconds": header_timeout_seconds,
                "body_timeout_seconds": body_timeout_seconds,
                "max_connections": max_connections,
            },
        )

    def _phase(self) -> int:
        raise NotImplementedError

    def connection_made(self, transport: Any) -> None:
        if len(self.connections) >= self.max_connections:
            self._refuse(transport)
            return
        super().connection_made(transport)  # type: ignore[misc]
        self._arm(self.header_timeout_seconds)  # a client that connects and says nothing

    def data_received(self, data: bytes) -> None:
        if self._refused is not None:
            return  # a refused client's request: dropped
        super().data_received(data)  # type: ignore[misc]
        # Checked after the parser has run: a request that came whole (the usual case) arms
        # nothing.
        phase = self._phase()
        if phase == _HEADERS:
            if self._deadline is None:
                self._arm(self.header_timeout_seconds)  # part of a request's headers came
        elif phase == _BODY:
            if not self._reading_body:
                self._reading_body = True
                self._arm(self.body_timeout_seconds)
        else:  # the request is complete, or the connection is ending
            self._reading_body = False
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._refused is not None:
            return
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self, seconds: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        what = "body" if self._reading_body else "request headers"
        log.debug("closing a connection from %s: its %s took too long", self.client, what)
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, transport: asyncio.Transport) -> None:
        self._refused = transport
        transport.write(_REFUSAL)
        if transport.can_write_eof():
            # Closing with the request unread would reset the connection, and the client could
            # lose the 503 with it: say we are done, drop what comes, close soon.
            transport.write_eof()
            self._deadline = self.loop.call_later(_LINGER_SECONDS, transport.close)
        else:
            transport.close()


class LimitedH11Protocol(LimitedConnection, H11Protocol):
    """uvicorn's h11 protocol (pure Python) with the deadlines and the cap."""

    def _phase(self) -> int:
        state = self.conn.their_state
        if state is h11.IDLE:
            return _HEADERS
        return _BODY if state is h11.SEND_BODY else _DONE


if HttpToolsProtocol is not None:

    class LimitedHttpToolsProtocol(LimitedConnection, HttpToolsProtocol):
        """uvicorn's httptools protocol (C parser) with the deadlines and the cap.

        httptools says where a request is only through its callbacks: the phase follows them.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._parsing = _DONE

        def _phase(self) -> int:
            return self._parsing

        def on_message_begin(self) -> None:
            self._parsing = _HEADERS
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._parsing = _BODY
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._parsing = _DONE
            super().on_message_complete()

        def data_received(self, data: bytes) -> None:
            if self._refused is None and self._parsing == _DONE and data:
                # Bytes of a new request before httptools calls on_message_begin (it does so
                # on the first byte; this covers a connection that sends one and stalls).
                self._parsing = _HEADERS
            super().data_received(data)
