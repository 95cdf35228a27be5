"""The listener's transport: connections are admitted before pynetdicom sees them.

pynetdicom counts a connection against ``maximum_associations`` from the moment it is
accepted, performs the TLS handshake in its accept loop without a timeout, and reads a
PDU of whatever length its header declares. Each of those lets an unauthenticated peer
starve or exhaust the listener, so the gateway runs its own server class
(:meth:`pynetdicom.ae.ApplicationEntity.make_server` takes one) with these rules:

1. **Accept.** A source address may hold at most ``max_unassociated_per_host``
   connections that have not yet delivered an A-ASSOCIATE-RQ, and the listener at most
   ``max_unassociated``; beyond that a connection is closed at once, before any thread
   is started for it.
2. **TLS handshake** in the connection's own thread, within ``handshake_timeout_s``.
3. **Association request.** The first PDU must be an A-ASSOCIATE-RQ of at most
   :data:`MAX_ASSOCIATION_RQ` bytes, complete within ``association_request_timeout_s``
   of the connection (a deadline, not an idle timeout: one byte every few seconds does
   not keep a connection alive). Only then is the connection handed to pynetdicom, which
   reads the buffered request from :class:`GuardedSocket` and negotiates as usual, so
   ``maximum_associations`` counts associations, never idle sockets.
4. **PDU size.** After that, a P-DATA-TF PDU longer than the maximum length we offered
   (``dicom.max_pdu``), or any other PDU longer than :data:`MAX_OTHER_PDU`, is answered
   with an A-ABORT and the connection closed before its body is read.

Every refusal is reported to :class:`Admission` (audit row + one log line, no PHI).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from ..metrics import ASSOCIATION_REFUSALS, RefusalReason

__all__ = [
    "MAX_ASSOCIATION_RQ",
    "MAX_OTHER_PDU",
    "Admission",
    "ConnectionGate",
    "GatedServer",
    "GuardedSocket",
    "abort_pdu",
    "install_thread_hook",
]

logger = logging.getLogger(__name__)

#: Largest A-ASSOCIATE-RQ accepted (128 presentation contexts with 15 transfer syntaxes
#: each encode to about 60 KiB).
MAX_ASSOCIATION_RQ = 256 * 1024
#: Largest PDU other than P-DATA-TF (release, abort: 10 bytes).
MAX_OTHER_PDU = 64 * 1024

_A_ASSOCIATE_RQ = 0x01
_P_DATA_TF = 0x04
_PDU_TYPES = frozenset(range(0x01, 0x08))


def abort_pdu(reason: int) -> bytes:
    """An A-ABORT PDU from the service provider (source 2) with ``reason`` (PS3.8 9.3.8)."""
    return struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, 0x02, reason)


class RefusedConnection(Exception):
    """A connection refused before association; the message is the audited reason."""

    def __init__(
        self,
        reason: str,
        abort_reason: int | None = None,
        kind: RefusalReason = RefusalReason.TIMEOUT,
    ) -> None:
        super().__init__(reason)
        self.abort_reason = abort_reason
        self.kind = kind


class Admission(Protocol):
    """What the server tells the listener's handlers about connections."""

    def connection_refused(
        self, host: str, port: int, tls: bool, reason: str, kind: RefusalReason
    ) -> None:
        """Audit a connection refused before association."""

    def protocol_refused(self, assoc: Any, reason: str) -> None:
        """Audit an association aborted for a protocol violation (oversized PDU)."""

    def association_started(self, assoc: Any) -> None:
        """A connection was handed to pynetdicom as ``assoc``."""

    def association_ended(self, assoc: Any) -> None:
        """``assoc`` ended, whatever the path (release, abort, reject, error)."""


class ConnectionGate:
    """Counts connections that have not delivered their association request.

    Parameters
    ----------
    per_host : int
        Most unassociated connections one source address may hold.
    total : int
        Most unassociated connections overall.
    reserved : int
        Of ``total``, slots only trusted addresses may take: other addresses together
        hold at most ``total - reserved``, so a crowd of strangers cannot lock the
        scanners out.
    trusted : callable, optional
        Whether an address is trusted (host-pinned allowed AEs, ``trusted_networks``).
    """

    def __init__(
        self,
        per_host: int,
        total: int,
        reserved: int = 0,
        trusted: Callable[[str], bool] | None = None,
    ) -> None:
        self.per_host = per_host
        self.total = total
        self.reserved = reserved
        self.trusted = trusted or (lambda _host: False)
        self._by_host: Counter[str] = Counter()
        self._untrusted = 0
        self._lock = threading.Lock()

    def enter(self, host: str) -> str | None:
        """Count a new connection from ``host``; return a refusal reason instead if full."""
        trusted = self.trusted(host)
        with self._lock:
            if self._by_host[host] >= self.per_host:
                return (
                    f"{host} already holds {self._by_host[host]} connections without an "
                    f"association request (limit {self.per_host})"
                )
            if sum(self._by_host.values()) >= self.total:
                return f"{self.total} connections are waiting for an association request"
            if not trusted and self._untrusted >= self.total - self.reserved:
                return (
                    f"{self._untrusted} connections from addresses of no pinned AE are waiting "
                    f"for an association request ({self.reserved} kept for trusted ones)"
                )
            self._by_host[host] += 1
            self._untrusted += 0 if trusted else 1
            return None

    def leave(self, host: str) -> None:
        """Forget one connection from ``host``."""
        trusted = self.trusted(host)
        with self._lock:
            self._untrusted -= 0 if trusted else 1
            self._by_host[host] -= 1
            if self._by_host[host] <= 0:
                del self._by_host[host]

    def pending(self) -> dict[str, int]:
        """Unassociated connections per source address."""
        with self._lock:
            return dict(self._by_host)


def _recv_exactly(sock: socket.socket, size: int, deadline: float, what: str) -> bytes:
    """Read ``size`` bytes before ``deadline`` (monotonic), or refuse the connection."""
    chunks: list[bytes] = []
    got = 0
    while got < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RefusedConnection(f"no complete {what} within the time limit")
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            ready = True
        else:
            ready = bool(select.select([sock], [], [], remaining)[0])
        if not ready:
            continue
        try:
            chunk = sock.recv(min(size - got, 65536))
        except (ssl.SSLWantReadError, BlockingIOError, InterruptedError):
            continue
        except OSError as exc:
            raise RefusedConnection(f"connection failed before the {what}: {exc}") from None
        if not chunk:
            raise RefusedConnection(f"connection closed before the {what} was complete")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_association_request(sock: socket.socket, deadline: float) -> bytes:
    """Read the first PDU, which must be an A-ASSOCIATE-RQ, before ``deadline``.

    Raises
    ------
    RefusedConnection
        Timeout, wrong PDU type, or a request longer than :data:`MAX_ASSOCIATION_RQ`.
    """
    header = _recv_exactly(sock, 6, deadline, "association request")
    pdu_type, _, length = struct.unpack(">BBL", header)
    if pdu_type != _A_ASSOCIATE_RQ:
        raise RefusedConnection(
            f"first PDU is type 0x{pdu_type:02X}, not an A-ASSOCIATE-RQ",
            abort_reason=0x02 if pdu_type in _PDU_TYPES else 0x01,
            kind=RefusalReason.MALFORMED,
        )
    if length > MAX_ASSOCIATION_RQ:
        raise RefusedConnection(
            f"A-ASSOCIATE-RQ of {length} bytes exceeds {MAX_ASSOCIATION_RQ}",
            abort_reason=0x06,
            kind=RefusalReason.PDU,
        )
    return header + _recv_exactly(sock, length, deadline, "association request")


class GuardedSocket(AssociationSocket):
    """pynetdicom's socket wrapper, replaying the buffered request and bounding PDUs.

    Built with :meth:`adopt` from the wrapper pynetdicom created for the connection, so
    pynetdicom's own start-up of the socket (its transport-connection event) happens
    exactly once.
    """

    _prefix: bytearray
    _max_pdata: int
    _on_refused: Any
    _in_body: bool

    @classmethod
    def adopt(
        cls, base: AssociationSocket, prefix: bytes, max_pdata: int, on_refused: Any
    ) -> GuardedSocket:
        """Take over ``base``'s state and add the guard.

        Parameters
        ----------
        base : AssociationSocket
            The wrapper pynetdicom made for the connection.
        prefix : bytes
            Bytes already read from the socket (the A-ASSOCIATE-RQ), delivered first.
        max_pdata : int
            Largest P-DATA-TF PDU length accepted (the maximum length we offered).
        on_refused : callable
            Called with the association and the reason when a PDU is refused.
        """
        guarded = cls.__new__(cls)
        guarded.__dict__.update(base.__dict__)
        guarded._prefix = bytearray(prefix)
        guarded._max_pdata = max_pdata
        guarded._on_refused = on_refused
        guarded._in_body = False
        return guarded

    @property
    def ready(self) -> bool:
        """Return True when buffered or socket data is waiting."""
        if self._prefix:
            return True
        return bool(super().ready)

    def recv(self, nr_bytes: int) -> bytearray:
        """Read ``nr_bytes``; refuse a PDU whose declared length is over the limit.

        pynetdicom's reader asks for a 6-byte header, then for the body length it
        declares. A header over the limit is answered with an A-ABORT and the socket is
        shut down; the reader gets a short header, which it treats as a closed transport
        (``Evt17``), so the body is never read or buffered.
        """
        data = bytearray(self._prefix[:nr_bytes])
        del self._prefix[:nr_bytes]
        if len(data) < nr_bytes:
            data += super().recv(nr_bytes - len(data))
        if self._in_body:
            self._in_body = False
            return data
        if nr_bytes != 6 or len(data) != 6:
            return data
        pdu_type, _, length = struct.unpack(">BBL", data)
        limit = self._max_pdata if pdu_type == _P_DATA_TF else MAX_OTHER_PDU
        if pdu_type == _A_ASSOCIATE_RQ and not self._prefix:
            limit = MAX_OTHER_PDU  # a second association request on one connection
        if length > limit:
            self._refuse(f"PDU type 0x{pdu_type:02X} of {length} bytes exceeds {limit}")
            return data[:5]
        self._in_body = True
        return data

    def _refuse(self, reason: str) -> None:
        sock = self.socket
        if sock is not None:
            try:
                sock.sendall(abort_pdu(0x06))  # invalid PDU parameter value
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self._on_refused(self.assoc, reason)
        except Exception:
            logger.exception("cannot record a refused PDU")


class GatedRequestHandler(RequestHandler):
    """Admits one connection (TLS, association request) before pynetdicom takes it."""

    server: GatedServer

    def handle(self) -> None:
        """Run the gate, then the association, then clean up whatever path it took."""
        server = self.server
        host, port = str(self.client_address[0]), int(self.client_address[1])
        started = time.monotonic()
        sock: socket.socket = self.request
        try:
            try:
                if server.ssl_context is not None:
                    sock = _tls_handshake(sock, server.ssl_context, server.handshake_timeout_s)
                first = read_association_request(
                    sock, started + server.association_request_timeout_s
                )
            finally:
                server.gate.leave(host)
        except RefusedConnection as exc:
            if exc.abort_reason is not None:
                _send_quietly(sock, abort_pdu(exc.abort_reason))
            _close_quietly(sock)
            server.admission.connection_refused(
                host, port, server.ssl_context is not None, str(exc), exc.kind
            )
            return
        except Exception:  # the gate must never take the listener down
            _close_quietly(sock)
            logger.exception("connection gate failed")
            return
        self.request = sock
        assoc = self._create_association()
        base = assoc.dul.socket
        assert base is not None  # noqa: S101 - _create_association sets it
        assoc.dul.socket = GuardedSocket.adopt(
            base, first, server.ae.maximum_pdu_size, server.protocol_refused
        )
        try:
            server.admission.association_started(assoc)
            from pynetdicom import evt

            evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
            assoc.start()
            assoc.join()
        finally:
            server.admission.association_ended(assoc)


def _tls_handshake(sock: socket.socket, context: ssl.SSLContext, timeout: float) -> socket.socket:
    try:
        tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
    except (OSError, ValueError) as exc:
        raise RefusedConnection(f"TLS set-up failed: {exc}", kind=RefusalReason.TLS) from None
    tls.settimeout(timeout)
    try:
        tls.do_handshake()
    except TimeoutError:
        _close_quietly(tls)
        raise RefusedConnection(
            "no TLS handshake within the time limit", kind=RefusalReason.TLS
        ) from None
    except (ssl.SSLError, OSError) as exc:
        _close_quietly(tls)
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise RefusedConnection(f"TLS handshake failed: {reason}", kind=RefusalReason.TLS) from None
    tls.settimeout(None)
    return tls


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.settimeout(1.0)
        sock.sendall(data)
    except OSError:
        pass


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


_previous_hook = threading.excepthook
_hook_lock = threading.Lock()


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    """Contain an error that malformed input raises inside pynetdicom's own threads.

    pynetdicom decodes PDUs and DIMSE messages in its DUL reactor thread; some malformed
    content (a command set without a Command Field, for one) raises there and ends the
    thread. The association then ends (its reactor notices), and this hook makes that a
    clean refusal: an A-ABORT to the peer and one warning line, without the traceback
    (kept at DEBUG) or the data. Errors in any other thread go to the previous hook.
    """
    from pynetdicom.association import Association
    from pynetdicom.dul import DULServiceProvider

    thread = args.thread
    if not isinstance(thread, DULServiceProvider | Association):
        _previous_hook(args)
        return
    dul = thread if isinstance(thread, DULServiceProvider) else thread.dul
    wrapper = getattr(dul, "socket", None)
    sock = getattr(wrapper, "socket", None)
    if sock is not None:
        _send_quietly(sock, abort_pdu(0x06))
        _close_quietly(sock)
    ASSOCIATION_REFUSALS.labels(RefusalReason.MALFORMED).inc()
    logger.warning(
        "association aborted: malformed input",
        extra={"error": args.exc_type.__name__, "thread_name": thread.name},
    )
    logger.debug(
        "malformed input traceback",
        exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
    )


def install_thread_hook() -> None:
    """Install :func:`_thread_excepthook` (process-wide, idempotent)."""
    global _previous_hook
    with _hook_lock:
        if threading.excepthook is not _thread_excepthook:
            _previous_hook = threading.excepthook
            threading.excepthook = _thread_excepthook


class GatedServer(ThreadedAssociationServer):
    """pynetdicom's threaded association server with the admission rules above.

    Built by :meth:`pynetdicom.ae.ApplicationEntity.make_server` with the extra keyword
    arguments below.

    Parameters
    ----------
    admission : Admission
        Receives refusals and association start/end.
    gate : ConnectionGate
        Unassociated-connection limits.
    handshake_timeout_s, association_request_timeout_s : float
        The two pre-association deadlines.
    """

    daemon_threads = True
    request_queue_size = 128  # listen backlog: a burst of connections is not dropped

    def __init__(
        self,
        *args: Any,
        admission: Admission,
        gate: ConnectionGate,
        handshake_timeout_s: float,
        association_request_timeout_s: float,
        **kwargs: Any,
    ) -> None:
        self.admission = admission
        self.gate = gate
        self.handshake_timeout_s = handshake_timeout_s
        self.association_request_timeout_s = association_request_timeout_s
        kwargs["request_handler"] = GatedRequestHandler
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        """Accept a connection without TLS (the handshake runs in its own thread)."""
        assert self.socket is not None  # noqa: S101 - bound in __init__
        client, address = self.socket.accept()
        client.settimeout(None)
        return client, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Admit the connection to the gate, or close it at once."""
        host = str(client_address[0])
        reason = self.gate.enter(host)
        if reason is None:
            return True
        self.admission.connection_refused(
            host, int(client_address[1]), self.ssl_context is not None, reason, RefusalReason.QUOTA
        )
        return False

    def protocol_refused(self, assoc: Any, reason: str) -> None:
        """Forward an oversized-PDU refusal to the admission."""
        self.admission.protocol_refused(assoc, reason)

    def shutdown(self) -> None:
        """Stop serving and close the socket (this server is not in ``ae._servers``)."""
        socketserver.BaseServer.shutdown(self)
        self.server_close()
