"""The gateway process: receive -> spool/catalog -> completion -> queue -> score -> outbox.

:class:`Gateway` builds every part from one :class:`~gateway.config.Settings`, starts
them in dependency order and stops them in reverse. ``ihgamp serve`` runs it until
SIGTERM/SIGINT.
"""

from __future__ import annotations

import logging
import resource
import signal
import threading
from types import FrameType
from typing import Any

from ihgamp_core.scoring import Engine

from .catalog import Catalog, JobStore
from .complete import CompletionMonitor
from .config import Settings
from .dispatch.dispatcher import Dispatcher
from .dispatch.outbox import Outbox
from .errors import ConfigError, GatewayError
from .models import load_engine, target_max_mpp
from .queue.inprocess import InProcessQueue
from .receive import DicomListener
from .report.writer import ReportWriter
from .resources import http_connection_budget, open_descriptors
from .retrieve import AutoPuller, RetrieveService
from .score.worker import ScoreProcessor, model_key
from .spool import Spool
from .web import HttpLimits, HttpServer, create_app

__all__ = ["Gateway"]

logger = logging.getLogger(__name__)


class Gateway:
    """All parts of one gateway process.

    Parameters
    ----------
    settings : Settings
        The validated configuration.
    engine : Engine, optional
        A loaded engine to reuse (tests); loaded from ``settings.model`` otherwise.
    """

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.catalog = Catalog(settings.catalog.url)
        self.jobs = JobStore(self.catalog)
        self.spool = Spool(settings.storage.spool_dir, settings.storage.min_free_mb * 2**20)
        self.spool.clean_incoming()
        self.outbox = Outbox(settings.storage.outbox_dir)
        if engine is None and settings.worker.count > 0:
            m = settings.model
            engine = load_engine(m.head, m.backbone_checkpoint, m.device, m.precision)
        self.engine = engine
        self.dispatcher = Dispatcher(self.catalog, self.outbox, settings)
        self.reports = ReportWriter(self.catalog, self.outbox, settings)
        processor = (
            ScoreProcessor(
                self.catalog,
                engine,
                self.reports,
                settings.model,
                on_reported=lambda _uid: self.dispatcher.wake(),
            )
            if engine is not None
            else _no_engine
        )
        self.queue = InProcessQueue(self.jobs, processor, settings.worker)
        self.completion = CompletionMonitor(
            self.catalog, self.queue, settings.completion, target_max_mpp(settings.model.head)
        )
        self.listener = DicomListener(settings.dicom, self.catalog, self.spool)
        self.retrieve = RetrieveService(
            settings, self.catalog, self.listener.handlers.store, self.queue
        )
        self.puller = AutoPuller(
            settings, self.catalog, self.retrieve, model_key(engine) if engine is not None else None
        )
        self.http: HttpServer | None = None
        if settings.http.enabled:
            app = create_app(
                self.catalog,
                self.outbox,
                settings,
                ready=lambda: not self._stopped.is_set(),
                pull=self.pull if settings.pacs else None,
                model=engine.model if engine is not None else None,
            )
            h = settings.http
            soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            limits = HttpLimits(
                http_connection_budget(settings, soft_limit, open_descriptors()),
                h.header_timeout_s,
                h.keep_alive_s,
                h.max_header_bytes,
            )
            self.http = HttpServer(app, h.bind_host, h.port, limits, h.access_log)
        self._stopped = threading.Event()

    def start(self) -> int:
        """Start dispatch, workers, completion, HTTP and the listener; return the DICOM port."""
        self.dispatcher.start()
        self.queue.start()
        self.completion.start()
        if self.http is not None:
            self.http.start()
        port = self.listener.start()
        self.puller.start()
        logger.info("gateway started", extra={"port": port, "workers": self.settings.worker.count})
        return port

    def stop(self) -> None:
        """Stop in reverse order: no new associations, no new completions, then workers."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.puller.stop()
        self.listener.stop()
        if self.http is not None:
            self.http.stop()
        self.completion.stop()
        self.queue.stop()
        self.dispatcher.stop()
        self.catalog.close()
        logger.info("gateway stopped")

    def pull(self, request: dict[str, Any]) -> dict[str, Any]:
        """Start pulling the studies of an accession number (HTTP ``POST /api/pull``).

        Parameters
        ----------
        request : dict
            ``accession_number`` (required), ``pacs`` (default: the first configured),
            ``method`` (default: the PACS's).

        Returns
        -------
        dict
            The PACS and the study UIDs found; the retrieves run in the background.

        Raises
        ------
        ConfigError, RemoteError
            Unknown PACS, unreachable PACS, or no such accession number.
        """
        accession = request.get("accession_number")
        if not isinstance(accession, str) or not accession.strip():
            raise ConfigError("accession_number is required")
        pacs = request.get("pacs") or self.settings.pacs[0].name
        method = request.get("method")
        uids = self.retrieve.study_uids(pacs, accession)

        def run() -> None:
            for uid in uids:
                try:
                    self.retrieve.retrieve(pacs, uid, method, accession_number=accession)
                except GatewayError as exc:
                    logger.warning("pull failed", extra={"study_uid": uid, "error": str(exc)})

        threading.Thread(target=run, name="pull", daemon=True).start()
        return {"accepted": True, "pacs": pacs, "studies": uids}

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly."""
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


def _no_engine(job: object) -> None:
    raise RuntimeError("this gateway runs no scoring workers (worker.count = 0)")
