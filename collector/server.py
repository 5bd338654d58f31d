"""Serve the collector's API with uvicorn on a socket we bind ourselves (so port 0 works)."""

from __future__ import annotations

import importlib.util
import logging
import resource
import signal
import socket

import uvicorn

from collector.api import connections
from collector.api.application import create_app
from collector.api.status_path import StatusFastPath
from collector.app import CollectorService
from collector.config import ServerConfig

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for TCP
    # sockets it recognises, and without it every keep-alive response waits ~40 ms for the
    # client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket, tls: bool = False) -> str:
    """Return the base URL of the bound socket: https:// when the collector serves TLS."""
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def serve(service: CollectorService, sock: socket.socket) -> None:
    """Run until SIGINT or SIGTERM; then stop the evaluation loop and close the store."""
    tls = service.config.tls
    limits = service.config.limits
    http, loop = implementations(service.config.server)
    protocol = (
        connections.LimitedHttpToolsProtocol
        if http == "httptools"
        else connections.LimitedH11Protocol
    ).configured(
        float(limits.header_timeout),
        float(limits.body_timeout),
        connection_cap(limits.max_connections),
    )
    log.info("serving HTTP with %s on %s", http, loop)
    # Certificate and key were loaded once at config load, so a mistake is a ConfigError there.
    config = uvicorn.Config(
        asgi_app(service),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        http=protocol,
        loop=loop,
        timeout_keep_alive=max(1, round(float(limits.keep_alive_timeout))),
        ssl_certfile=tls.cert_file if tls else None,
        ssl_keyfile=tls.key_file if tls else None,
    )
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal with the
    # previous handlers restored; these handlers turn that into a clean return.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        server.run(sockets=[sock])
    except (KeyboardInterrupt, Terminated) as stop:
        log.info("stopped by %s", "SIGINT" if isinstance(stop, KeyboardInterrupt) else "SIGTERM")
    finally:
        signal.signal(signal.SIGTERM, previous)
        service.close()


def asgi_app(service: CollectorService) -> StatusFastPath:
    """The app uvicorn serves: the status page's fast path ahead of the Litestar app."""
    return StatusFastPath(create_app(service), service)


def implementations(server: ServerConfig) -> tuple[str, str]:
    """The HTTP parser and event loop to serve with: `auto` is the C one when installed."""
    http, loop = server.http, server.loop
    if http == "auto":
        http = "httptools" if _installed("httptools") else "h11"
    if loop == "auto":
        loop = "uvloop" if _installed("uvloop") else "asyncio"
    return http, loop


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def connection_cap(max_connections: int, reserve: int = 128) -> int:
    """`limits.max_connections`, or less if the open-files limit would be reached first."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or max_connections + reserve <= soft:
        return max_connections
    cap = max(1, soft - reserve)
    log.warning(
        "limits.max_connections is %d but only %d files may be open (ulimit -n); "
        "taking %d connections at most: raise LimitNOFILE (systemd) or ulimit -n",
        max_connections,
        soft,
        cap,
    )
    return cap


class Terminated(Exception):
    """SIGTERM arrived: stop as cleanly as for Ctrl-C."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated
