"""Running the FastAPI app with uvicorn in a background thread of the gateway process."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import uvicorn

__all__ = ["HttpServer"]

logger = logging.getLogger(__name__)


class HttpServer:
    """uvicorn in a thread, without its own signal handlers (the gateway owns signals).

    Parameters
    ----------
    app : ASGI application
        The FastAPI app.
    host, port : str, int
        Where to listen (port 0 = any free port).
    """

    def __init__(self, app: Any, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
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
        logger.info("HTTP service started", extra={"port": self.port})
        return self.port

    def stop(self) -> None:
        """Stop serving."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
