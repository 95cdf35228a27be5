"""The DICOM listener: a pynetdicom AE with Verification and Storage SCP contexts.

Instances are streamed to disk as they arrive (pynetdicom's chunked receive writes the
data set into the spool's ``.incoming`` folder, :mod:`.incoming`), so memory stays
bounded for multi-GB slides. Stored as received: no transcoding. Connections pass the
admission rules of :mod:`.transport` before pynetdicom negotiates an association.

Deflated Explicit VR Little Endian is not offered: inflating a data set is unbounded in
memory (a few MB can inflate to GB) and the slide readers cannot read a deflated whole
slide image, so a deflated instance could be acknowledged and never scored. Senders fall
back to another transfer syntax at negotiation.
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Any

from pynetdicom import AE, _config, evt

from ..catalog import Catalog
from ..config import DicomSettings
from ..spool import Spool
from . import incoming
from .access import AccessPolicy
from .handlers import ReceiveHandlers
from .store import InstanceStore
from .transport import ConnectionGate, GatedServer, install_thread_hook

__all__ = [
    "DEFLATED",
    "TRANSFER_SYNTAXES",
    "DicomListener",
    "configure_pynetdicom",
    "tls_server_context",
]

logger = logging.getLogger(__name__)

#: What scanners and PACS send, accepted as they are (no transcoding).
TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, First-Order Prediction
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless Only
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    "1.2.840.10008.1.2.4.202",  # HTJ2K Lossless RPCL
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
)
DEFLATED = "1.2.840.10008.1.2.1.99"

_configured = threading.Lock()
VERIFICATION = "1.2.840.10008.1.1"


class _NoTraceback(logging.Filter):
    """pynetdicom logs tracebacks of undecodable PDUs (malformed input): keep one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop the traceback of a pynetdicom record; keep the message."""
        if record.exc_info is not None:
            kind = record.exc_info[0].__name__ if record.exc_info[0] else "error"
            record.msg = f"{record.getMessage()} ({kind})"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def configure_pynetdicom() -> None:
    """Set pynetdicom's process-wide options for the gateway.

    * chunked receive: C-STORE data sets stream into a file, never held in memory;
    * no identifier logging and no per-event logging: logs carry no patient data;
      pynetdicom's own tracebacks of malformed PDUs become one line;
    * pydicom does not validate values while reading (its warnings quote the values,
      which may be patient data) and logs errors only;
    * received data sets stream through :func:`.incoming.open_receive_file`;
    * malformed input that raises inside pynetdicom's threads aborts the association
      with one log line (:func:`.transport.install_thread_hook`).
    """
    import warnings

    import pydicom.config

    # pydicom warns (to stderr, outside the logs) about what it finds in malformed data
    # sets; the refusal that follows says what matters, in the log.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\..*)?$")
    with _configured:
        pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
        _config.STORE_RECV_CHUNKED_DATASET = True
        _config.LOG_REQUEST_IDENTIFIERS = False
        _config.LOG_RESPONSE_IDENTIFIERS = False
        _config.LOG_HANDLER_LEVEL = "none"
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # Logger filters do not apply to records propagating from child loggers: put the
    # filter on each of pynetdicom's module loggers (all imported by now).
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "pynetdicom"]
    for name in ["pynetdicom", *names]:
        module_logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTraceback) for f in module_logger.filters):
            module_logger.addFilter(_NoTraceback())
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    incoming.install()
    install_thread_hook()


def tls_server_context(settings: DicomSettings) -> ssl.SSLContext | None:
    """Build the listener's TLS context (TLS 1.2+, client certificates per settings)."""
    tls = settings.tls
    if not tls.enabled:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(tls.certificate), str(tls.private_key))
    if tls.ca_certificates is not None:
        ctx.load_verify_locations(cafile=str(tls.ca_certificates))
    ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_certificate else ssl.CERT_OPTIONAL
    return ctx


class DicomListener:
    """The running DICOM service.

    Parameters
    ----------
    settings : DicomSettings
        AE title, address, limits, SOP classes, timeouts, TLS.
    catalog : Catalog
        The catalog.
    spool : Spool
        The spool; its ``.incoming`` folder receives the streamed data sets.
    """

    def __init__(self, settings: DicomSettings, catalog: Catalog, spool: Spool) -> None:
        configure_pynetdicom()
        self.settings = settings
        self.policy = AccessPolicy(settings)
        ssl_context = tls_server_context(settings)
        self.handlers = ReceiveHandlers(
            catalog,
            InstanceStore.for_settings(settings, catalog, spool),
            self.policy,
            ssl_context is not None,
            settings.ae_title,
        )
        self.gate = ConnectionGate(
            settings.max_unassociated_per_host,
            settings.max_unassociated,
            settings.reserved(),
            self.policy.trusted_address,
        )
        ae = AE(ae_title=settings.ae_title)
        # The handlers enforce max_associations (with an audited reason); pynetdicom's
        # own count, which includes requests being rejected, is only a backstop.
        ae.maximum_associations = settings.max_associations + settings.max_unassociated
        ae.maximum_pdu_size = settings.max_pdu
        ae.acse_timeout = settings.acse_timeout_s
        ae.dimse_timeout = settings.dimse_timeout_s
        ae.network_timeout = settings.network_timeout_s
        ae.require_called_aet = True
        ae.add_supported_context(VERIFICATION)
        for sop_class in settings.sop_classes:
            ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
        self._ae = ae
        self._ssl = ssl_context
        self._server: Any = None

    @property
    def port(self) -> int:
        """Return the bound port (useful with port 0 = any free port)."""
        if self._server is None:
            raise RuntimeError("listener not started")
        return int(self._server.server_address[1])

    def start(self) -> int:
        """Start listening in background threads; return the bound port."""
        h = self.handlers
        handlers: list[Any] = [
            (evt.EVT_REQUESTED, h.on_requested),
            (evt.EVT_ACCEPTED, h.on_accepted),
            (evt.EVT_REJECTED, h.on_rejected),
            (evt.EVT_C_ECHO, h.on_echo),
            (evt.EVT_C_STORE, h.on_store),
        ]
        server = self._ae.make_server(
            (self.settings.bind_host, self.settings.port),
            evt_handlers=handlers,
            ssl_context=self._ssl,
            server_class=GatedServer,
            admission=h,
            gate=self.gate,
            handshake_timeout_s=self.settings.handshake_timeout_s,
            association_request_timeout_s=self.settings.association_request_timeout_s,
        )
        threading.Thread(
            target=server.serve_forever,
            name="dicom-accept",
            kwargs={"poll_interval": 0.5},
            daemon=True,
        ).start()
        self._server = server
        logger.info(
            "DICOM listener started",
            extra={
                "ae_title": self.settings.ae_title,
                "host": self.settings.bind_host,
                "port": self.port,
                "tls": self._ssl is not None,
            },
        )
        return self.port

    def stop(self) -> None:
        """Stop accepting associations and close the server socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._ae.shutdown()
        logger.info("DICOM listener stopped")
