"""Serve the collector's API with uvicorn on a socket we bind ourselves (so port 0 works)."""

from __future__ import annotations

import logging
import socket

import uvicorn

from collector.api import create_app
from collector.service import CollectorService

log = logging.getLogger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(service: CollectorService, sock: socket.socket) -> None:
    """Run until SIGINT or SIGTERM; then stop the evaluation loop and close the store."""
    config = uvicorn.Config(create_app(service), log_level="warning", access_log=False,
                            lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn re-raises the SIGINT it handled; Ctrl-C is the normal way to stop.
        log.info("stopped by SIGINT")
    finally:
        service.close()
