"""A gateway process: the parts of its role, started in dependency order.

``ihgamp serve --role all`` (the default) runs every part in one process: receive ->
spool/catalog -> completion -> queue -> score -> outbox -> dispatch, plus the HTTP
service. The other roles run a subset (:mod:`gateway.roles`); several processes of any
role share one catalog (PostgreSQL), one spool and outbox, and, with the Celery backend,
one broker. :class:`Gateway` builds its parts with :func:`gateway.parts.build_core`,
starts them in dependency order and stops them in reverse; ``run_forever`` handles
SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import threading
from types import FrameType
from typing import Any

from . import analyses, metrics
from .analyses.engine import Engine, model_key
from .config import QueueBackend, Settings
from .dispatch.dispatcher import Dispatcher
from .errors import ConfigError
from .outbox import Outbox
from .parts import build_core
from .probes import NodeEndpoint
from .receive import DicomListener
from .resources import http_connection_budget, open_descriptors
from .retrieve import AutoPuller, RetrieveService
from .retrieve.pulls import PullDesk, PullRunner
from .roles import Role, problems
from .spool import Spool
from .web import HttpLimits, HttpServer, create_app

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)


class Gateway:
    """The parts of one gateway process.

    Parameters
    ----------
    settings : Settings
        The validated configuration.
    engine : Engine, optional
        A loaded engine to reuse (tests); loaded from ``settings.model`` otherwise.
    role : Role
        Which parts to run (default: all of them).

    Raises
    ------
    ConfigError
        If the role cannot run with these settings (e.g. a split role on SQLite).
    """

    def __init__(
        self, settings: Settings, engine: Engine | None = None, role: Role = Role.ALL
    ) -> None:
        issues = problems(role, settings)
        if issues:
            raise ConfigError(f"cannot run role {role}: " + "; ".join(issues))
        self.settings = settings
        self.role = role
        self.node = settings.node_name()
        core = self.core = build_core(settings)
        self.catalog, self.jobs, self.queue, self.lifecycle = (
            core.catalog,
            core.jobs,
            core.queue,
            core.lifecycle,
        )
        self.outbox = Outbox(settings.storage.outbox_dir)
        self.spool = Spool(
            settings.storage.spool_dir, settings.storage.min_free_mb * 2**20, node=self.node
        )
        celery = settings.worker.backend == QueueBackend.CELERY

        self.dispatcher = (
            Dispatcher(self.catalog, self.outbox, settings) if self._runs(Role.DISPATCHER) else None
        )
        self.engine: Engine | None = None
        self.scores_here = self._runs(Role.WORKER) and settings.worker.count > 0 and not celery
        if self.scores_here:
            self.engine = core.enable_scoring(engine, on_reported=self._reported)
        elif role == Role.WORKER and engine is not None:
            self.engine = engine

        self.listener: DicomListener | None = None
        self.retrieve: RetrieveService | None = None
        self.puller: AutoPuller | None = None
        self.completion: Any = None
        self.sweeper: Any = None
        if self._runs(Role.RECEIVER):
            from .complete import CompletionMonitor

            self.listener = DicomListener(settings.dicom, self.catalog, self.spool)
            # Before anything receives: reconcile what an interrupted run left behind.
            self.listener.handlers.store.recover()
            self.retrieve = RetrieveService(
                settings, self.catalog, self.listener.handlers.store, self.lifecycle
            )
            keys: dict[str, str] = {}
            if self.engine is not None:
                key = model_key(self.engine)
                keys = {e.name: key for e in analyses.entries() if e.uses_engine}
            self.puller = AutoPuller(settings, self.catalog, self.retrieve, keys, core.leader)
            self.completion = CompletionMonitor(
                self.catalog, self.lifecycle, settings.completion, core.leader
            )
            if celery:
                from .queue.celery_queue import CeleryQueue, publish
                from .queue.sweeper import Sweeper

                assert isinstance(self.queue, CeleryQueue)  # noqa: S101 - built for celery
                app = self.queue.app
                self.sweeper = Sweeper(
                    self.jobs,
                    lambda ids: publish(app, self.jobs, ids),
                    settings.worker,
                    core.leader,
                )

        self.pull_runner: PullRunner | None = None
        if self.retrieve is not None and settings.pacs:
            self.pull_runner = PullRunner(self.catalog, self.retrieve, settings, core.owner)
        wake = self.pull_runner.wake if self.pull_runner is not None else None
        self.pulls = PullDesk(self.catalog, settings, on_queued=wake)

        self.http: HttpServer | None = None
        if self._runs(Role.API) and settings.http.enabled:
            app = create_app(
                self.catalog,
                self.outbox,
                settings,
                ready=lambda: not self._stopped.is_set(),
                pull=self.pulls.request if settings.pacs else None,
                pull_status=self.pulls.get if settings.pacs else None,
                rescore=self.lifecycle.rescore,
                model=self.engine.model if self.engine is not None else None,
            )
            h = settings.http
            soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            limits = HttpLimits(
                http_connection_budget(settings, soft_limit, open_descriptors()),
                h.header_timeout_s,
                h.keep_alive_s,
                h.max_header_bytes,
                h.max_connections_per_client,
            )
            self.http = HttpServer(app, h.bind_host, h.port, limits, h.access_log)
        self._stopped = threading.Event()
        self._started = threading.Event()
        self.node_endpoint: NodeEndpoint | None = None
        if self.http is None and settings.node.metrics_port:
            node = settings.node
            self.node_endpoint = NodeEndpoint(node.metrics_host, node.metrics_port, self._ready)

    def _reported(self, _study_uid: str) -> None:
        if self.dispatcher is not None:
            self.dispatcher.wake()

    def _runs(self, part: Role) -> bool:
        return self.role in (Role.ALL, part)

    def _metrics(self) -> None:
        """Gauges from the catalog; every counter label set known at start, at 0."""
        metrics.observe(self.catalog, self.spool)
        destinations = [node.name for _, node in self.settings.dispatch.nodes()]
        metrics.initialise(self.settings.analyses.enabled, destinations)

    def start(self) -> int:
        """Start the role's parts; return the DICOM port (0 without a listener)."""
        self._metrics()
        if self.node_endpoint is not None:
            self.node_endpoint.start()
        if self.dispatcher is not None:
            self.dispatcher.start()
        if self.scores_here:
            self.queue.start()
        if self.completion is not None:
            self.completion.start()
        if self.sweeper is not None:
            self.sweeper.start()
        if self.http is not None:
            self.http.start()
        port = self.listener.start() if self.listener is not None else 0
        if self.puller is not None:
            self.puller.start()
        if self.pull_runner is not None:
            self.pull_runner.start()
        self._started.set()
        logger.info(
            "gateway started",
            extra={"role": str(self.role), "node": self.node, "port": port},
        )
        return port

    def _ready(self) -> bool:
        """Readiness of a node without HTTP: started, not stopping, and the catalog answers."""
        if not self._started.is_set() or self._stopped.is_set():
            return False
        self.catalog.counts()
        return True

    def stop(self) -> None:
        """Stop in reverse order: no new associations, no new completions, then workers."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.pull_runner is not None:
            self.pull_runner.stop()
        if self.puller is not None:
            self.puller.stop()
        if self.listener is not None:
            self.listener.stop()
        if self.http is not None:
            self.http.stop()
        if self.sweeper is not None:
            self.sweeper.stop()
        if self.completion is not None:
            self.completion.stop()
        if self.scores_here:
            self.queue.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.node_endpoint is not None:
            self.node_endpoint.stop()
        self.core.close()
        logger.info("gateway stopped", extra={"role": str(self.role), "node": self.node})

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly.

        A worker on the Celery backend runs Celery's worker instead (it handles the
        signals: a running job finishes, a second signal aborts it).
        """
        if self.role == Role.WORKER and self.settings.worker.backend == QueueBackend.CELERY:
            from .queue.celery_queue import run_worker

            self._metrics()
            if self.node_endpoint is not None:
                self.node_endpoint.start()
            self._started.set()  # Celery's worker takes over: ready while the catalog answers
            try:
                run_worker(self.settings, self.settings.logging.level)
            finally:
                if self.node_endpoint is not None:
                    self.node_endpoint.stop()
                self.core.close()
            return
        wake = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            logger.info("signal received, shutting down", extra={"signal": signum})
            wake.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        try:
            wake.wait()
        finally:
            self.stop()
        if self.queue is not None and self.queue.busy():
            # A job was handed back (queued again) while its thread still computes: end the
            # process now rather than let interpreter teardown abort under the model.
            logging.shutdown()
            os._exit(0)
