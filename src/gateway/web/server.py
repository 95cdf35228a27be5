"""Running the FastAPI app with uvicorn in a background thread of the gateway process.

The HTTP service shares the process, and its file descriptors, with the DICOM listener.
So that idle or half-open HTTP connections cannot use them all up:

* at most ``max_connections`` connections are open: one more is closed at once (and at
  the limit uvicorn answers requests with 503, ``limit_concurrency``); the listen
  backlog is at most ``max_connections``, so a burst is accepted, and closed, in batches;
* one client address holds at most ``max_connections_per_client`` of them, so a few
  hosts with half-open connections cannot take the status page and the API away;
* a connection must send a request's headers within ``header_timeout_s`` of opening
  (or of its first byte, on a kept-alive connection), else it is closed; idle kept-alive
  connections close after ``keep_alive_s``; headers are capped at ``max_header_bytes``
  (h11's incomplete-event limit);
* the gateway raises the soft descriptor limit and lowers ``max_connections`` to what
  the limit leaves after the DICOM listener's reserve (:mod:`gateway.resources`).

uvicorn's own loggers propagate to the gateway's handler (JSON lines); the access log
is one structured record per request, with the path but never the query string (FHIR
searches carry patient identifiers there).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HttpLimits", "HttpServer"]

logger = logging.getLogger(__name__)


class HttpLimits:
    """Connection limits of the HTTP service.

    Parameters
    ----------
    max_connections : int
        Open connections at most.
    header_timeout_s : float
        Seconds a connection may take to send a request's headers.
    keep_alive_s : int
        Seconds an idle kept-alive connection stays open.
    max_header_bytes : int
        Largest request head accepted.
    per_client : int, optional
        Open connections one client address may hold (default: an eighth of
        ``max_connections``, at least 4); never more than ``max_connections - 1``.
    """

    def __init__(
        self,
        max_connections: int = 256,
        header_timeout_s: float = 10.0,
        keep_alive_s: int = 5,
        max_header_bytes: int = 16384,
        per_client: int | None = None,
    ) -> None:
        if max_connections < 1 or header_timeout_s <= 0 or keep_alive_s < 1:
            raise ValueError("HTTP limits must be positive")
        if per_client is not None and per_client < 1:
            raise ValueError("HTTP limits must be positive")
        self.max_connections = max_connections
        wanted = per_client if per_client is not None else max(4, max_connections // 8)
        self.per_client = max(1, min(wanted, max_connections - 1))
        # asyncio accepts up to `backlog` sockets per loop tick before the guard closes
        # the excess: a backlog no larger than max_connections keeps those in flight,
        # with the open ones, near twice max_connections.
        self.backlog = max(8, min(128, max_connections))
        self.header_timeout_s = header_timeout_s
        self.keep_alive_s = keep_alive_s
        self.max_header_bytes = max_header_bytes


class _AccessLogFilter(logging.Filter):
    """The uvicorn access record as one structured record without the query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            client, method, path, _version, status = args
            record.msg = "HTTP request"
            record.args = ()
            record.client = client
            record.method = method
            record.path = str(path).split("?", 1)[0]
            record.status = status
        return True


class _PlainFilter(logging.Filter):
    """Drop uvicorn's terminal-colour copy of each message (``color_message``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        return True


_ACCESS_FILTER = _AccessLogFilter()
_PLAIN_FILTER = _PlainFilter()


def _route_uvicorn_logs(access_log: bool) -> None:
    """Let uvicorn's loggers propagate to the root handler (the gateway's format)."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        log = logging.getLogger(name)
        log.handlers = []
        log.propagate = True
        log.setLevel(logging.NOTSET)
        if _PLAIN_FILTER not in log.filters:
            log.addFilter(_PLAIN_FILTER)
    access = logging.getLogger("uvicorn.access")
    if _ACCESS_FILTER not in access.filters:
        access.addFilter(_ACCESS_FILTER)
    access.disabled = not access_log


def _guarded_protocol(limits: HttpLimits) -> type[H11Protocol]:
    """The h11 protocol of uvicorn, with connection caps and a request-header timeout."""
    by_client: Counter[str] = Counter()  # touched on the event loop's thread only

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _counted: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            peer = transport.get_extra_info("peername")
            client = str(peer[0]) if peer else "?"
            if len(self.connections) > limits.max_connections:
                _refused.note()
                transport.abort()
                return
            if by_client[client] >= limits.per_client:
                _refused.note(client)
                transport.abort()
                return
            by_client[client] += 1
            self._counted = client
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            if self._counted is not None:
                by_client[self._counted] -= 1
                if by_client[self._counted] <= 0:
                    del by_client[self._counted]
                self._counted = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # Still without a complete request head: the clock started at the first byte.
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                if self._header_timer is None:
                    self._arm_header_timer()
            else:
                self._disarm_header_timer()

        def on_response_complete(self) -> None:
            self._disarm_header_timer()
            super().on_response_complete()

        def _arm_header_timer(self) -> None:
            self._header_timer = self.loop.call_later(limits.header_timeout_s, self._header_timeout)

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self.transport.close()

    return GuardedH11Protocol


class _RefusalLog:
    """One warning per minute at most about connections closed at a limit."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0

    def note(self, client: str | None = None) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= 60:
            logger.warning(
                "HTTP connection limit reached; new connections are closed"
                if client is None
                else "HTTP connection limit of a client address reached; its new connections "
                "are closed",
                extra={"refused": self.count, **({"client": client} if client else {})},
            )
            self.last = now
            self.count = 0


_refused = _RefusalLog()


class HttpServer:
    """uvicorn in a thread, without its own signal handlers (the gateway owns signals).

    Parameters
    ----------
    app : ASGI application
        The FastAPI app.
    host, port : str, int
        Where to listen (port 0 = any free port).
    limits : HttpLimits, optional
        Connection limits (defaults as in ``[http]``).
    access_log : bool
        Log one record per request.
    """

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        limits: HttpLimits | None = None,
        access_log: bool = True,
    ) -> None:
        limits = limits or HttpLimits()
        self.limits = limits
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=_guarded_protocol(limits),
            log_config=None,
            log_level=None,
            access_log=access_log,
            lifespan="off",
            limit_concurrency=limits.max_connections,
            backlog=limits.backlog,
            timeout_keep_alive=limits.keep_alive_s,
            h11_max_incomplete_event_size=limits.max_header_bytes,
            server_header=False,
        )
        _route_uvicorn_logs(access_log)
        # uvicorn installs signal handlers only in the main thread; this runs in another.
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        servers = getattr(self._server, "servers", [])
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("HTTP server not started")

    def start(self, timeout_s: float = 30.0) -> int:
        """Start serving; return the port."""
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the HTTP server did not start (port in use?)")
            time.sleep(0.05)
        logger.info(
            "HTTP service started",
            extra={"port": self.port, "max_connections": self.limits.max_connections},
        )
        return self.port

    def stop(self) -> None:
        """Stop serving."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
