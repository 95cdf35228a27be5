"""Raw DICOM upper-layer bytes for tests that behave like a hostile or broken peer.

PDUs are built with pynetdicom's own encoders (so a valid request is valid), then cut,
corrupted or sent too slowly by the tests.
"""

from __future__ import annotations

import socket
import struct
import time

from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
from pynetdicom.presentation import build_context

VERIFICATION = "1.2.840.10008.1.1"
WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"


def associate_rq(
    calling: str = "SCANNER",
    called: str = "IHGAMP",
    contexts: tuple[str, ...] = (VERIFICATION, WSI),
) -> bytes:
    """A complete, valid A-ASSOCIATE-RQ PDU."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    items = []
    for index, uid in enumerate(contexts):
        cx = build_context(uid, ["1.2.840.10008.1.2.1"])
        cx.context_id = 2 * index + 1
        items.append(cx)
    primitive.presentation_context_definition_list = items
    max_length = MaximumLengthNotification()
    max_length.maximum_length_received = 16384
    primitive.user_information = [max_length]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def pdu_header(pdu_type: int, length: int) -> bytes:
    """A PDU header declaring ``length`` bytes of body."""
    return struct.pack(">BBL", pdu_type, 0, length)


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the listener from ``source`` (any 127.x.y.z address works)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the peer closes (or resets) ``sock`` within ``within`` seconds."""
    deadline = time.monotonic() + within
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return True
        if not data:
            return True
    return False


def read_reply(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Whatever the peer sends before it closes or goes quiet for ``timeout``."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except OSError:
        pass
    return b"".join(chunks)
