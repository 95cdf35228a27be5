"""The node port of roles without the HTTP service: ``/health``, ``/ready`` and ``/metrics``.

A ``receiver``, ``worker`` or ``dispatcher`` node has no HTTP API, yet an orchestrator
needs to know it lives and is ready, and Prometheus needs its counters. With
``node.metrics_port`` set, such a node answers on that port:

``/health``   200 while the process serves (liveness)
``/ready``    200 when the catalog answers and the role's parts run, else 503
``/metrics``  the Prometheus text format (:mod:`gateway.metrics`)

Anything else is 404. The port carries no patient data and no authentication; bind it to
the pod or host network only (``node.metrics_host``).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from . import metrics

__all__ = ["NodeEndpoint"]

logger = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Probes every few seconds would flood the log: say nothing."""


class NodeEndpoint:
    """Serve health, readiness and metrics of one node on ``host:port``.

    Parameters
    ----------
    host, port : str, int
        Where to listen (port 0: any free port, see :attr:`port` after :meth:`start`).
    ready : callable
        Returns True when the node can do its work; an exception counts as not ready.
    """

    def __init__(self, host: str, port: int, ready: Callable[[], bool]) -> None:
        self._host = host
        self._port = port
        self._ready = ready
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> int:
        """Bind, serve in a daemon thread; return the bound port."""
        server = make_server(
            self._host, self._port, self._app, server_class=_Server, handler_class=_QuietHandler
        )
        assert isinstance(server, _Server)  # noqa: S101 - make_server builds server_class
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="node-endpoint", daemon=True
        )
        self._thread.start()
        port = int(server.server_address[1])
        logger.info("node endpoint served", extra={"host": self._host, "port": port})
        return port

    def stop(self) -> None:
        """Stop serving (no-op when not started)."""
        if self._server is None:
            return
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server.server_close()
        self._server = None

    def _is_ready(self) -> bool:
        try:
            return bool(self._ready())
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", {"error": "GET only"})
        if path == "/health":
            return _reply(start_response, "200 OK", {"status": "ok"})
        if path == "/ready":
            ok = self._is_ready()
            return _reply(
                start_response, "200 OK" if ok else "503 Service Unavailable", {"ready": ok}
            )
        if path == "/metrics":
            body, content_type = metrics.render()
            start_response("200 OK", [("Content-Type", content_type)])
            return [body]
        return _reply(start_response, "404 Not Found", {"error": "/health, /ready or /metrics"})


def _reply(start_response: StartResponse, status: str, data: dict[str, Any]) -> list[bytes]:
    body = json.dumps(data).encode()
    start_response(status, [("Content-Type", "application/json")])
    return [body]
