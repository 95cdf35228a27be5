"""Admission before association, against a real listener on loopback.

Half-open, idle and trickling connections, TLS clients that never handshake, PDUs that
declare gigabytes, and every way an association can end: none of them may keep a
scanner out, hold memory, or keep a calling AE's slot after the association is gone.
The attacker connects from 127.0.0.2, the scanner from 127.0.0.1 (both loopback).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE

from gateway.catalog.dimse_audit import DimseAudit
from support.gateway import send, tiny_wsi, wait_for
from support.listener import Listener, tls_client, tls_sections
from support.wire import (
    associate_rq,
    closed_by_peer,
    connect,
    pdu_header,
    read_reply,
)

pytestmark = pytest.mark.integration

ATTACKER = "127.0.0.2"
Start = Callable[..., Listener]


def _refusals(running: Listener) -> list[str]:
    return [
        a["reason"] or ""
        for a in DimseAudit(running.catalog).associations(1000)
        if a["result"] == "refused"
    ]


def _echo(port: int, calling: str = "SCANNER", tls: object = None) -> AE:
    ae = AE(ae_title=calling)
    ae.add_requested_context("1.2.840.10008.1.1")
    ae.acse_timeout = 5
    return ae.associate("127.0.0.1", port, ae_title="IHGAMP", tls_args=tls)  # type: ignore[arg-type]


def _trickle(sock: socket.socket, data: bytes, every: float, stop: threading.Event) -> None:
    for byte in data:
        if stop.wait(every):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


def test_a_scanner_gets_through_fifty_half_open_and_a_trickling_connection(
    listeners: Start, tmp_path: Path
) -> None:
    running = listeners(
        dicom={
            "max_associations": 4,
            "max_unassociated_per_host": 100,
            "max_unassociated": 200,
            "association_request_timeout_s": 6,
        }
    )
    held = [connect(running.port, ATTACKER) for _ in range(50)]
    slow = connect(running.port, ATTACKER)
    stop = threading.Event()
    trickler = threading.Thread(target=_trickle, args=(slow, associate_rq(), 0.25, stop))
    trickler.start()
    try:
        time.sleep(0.5)  # the held connections are all accepted and waiting
        started = time.monotonic()
        file = tiny_wsi(tmp_path / "scan", generate_uid())
        assert send(running.port, [file]) == [0]
        assert time.monotonic() - started < 5.0  # not because the attackers timed out
        # The pre-association deadline closes every one of them, the trickler too
        # (which would take 0.25 s x its length, about 30 s, to finish its request).
        assert all(closed_by_peer(s, within=8) for s in held)
        assert closed_by_peer(slow, within=3)
    finally:
        stop.set()
        trickler.join()
        for s in [*held, slow]:
            s.close()
    reason = "no complete association request within the time limit"
    wait_for(lambda: any(reason in r for r in _refusals(running)), timeout=5)
    assert running.server.gate.pending() == {}


def test_a_tls_scanner_gets_through_fifty_connections_that_never_handshake(
    listeners: Start, pki: Path, tmp_path: Path
) -> None:
    running = listeners(
        dicom={
            "tls": tls_sections(pki),
            "max_unassociated_per_host": 100,
            "max_unassociated": 200,
            "handshake_timeout_s": 4,
        }
    )
    held = [connect(running.port, ATTACKER) for _ in range(50)]
    try:
        time.sleep(0.5)
        started = time.monotonic()
        file = tiny_wsi(tmp_path / "scan", generate_uid())
        assert send(running.port, [file], tls=(tls_client(pki), "127.0.0.1")) == [0]
        assert time.monotonic() - started < 3.5  # the handshake timeout had not fired yet
        assert all(closed_by_peer(s, within=6) for s in held)
    finally:
        for s in held:
            s.close()
    reason = "no TLS handshake within the time limit"
    wait_for(lambda: any(reason in r for r in _refusals(running)), timeout=5)


def test_a_source_address_holds_at_most_its_quota_of_unassociated_connections(
    listeners: Start,
) -> None:
    running = listeners(dicom={"max_unassociated_per_host": 3})
    sockets = [connect(running.port, ATTACKER) for _ in range(10)]
    try:
        time.sleep(0.5)
        closed = [s for s in sockets if closed_by_peer(s, within=0.5)]
        assert len(closed) == 7  # refused at accept; three wait for their deadline
        assoc = _echo(running.port)  # another address is not affected
        assert assoc.is_established
        assoc.release()
    finally:
        for s in sockets:
            s.close()
    reason = f"{ATTACKER} already holds 3 connections"
    wait_for(lambda: any(reason in r for r in _refusals(running)), timeout=5)


def test_a_first_pdu_declaring_four_gigabytes_is_aborted_unread(listeners: Start) -> None:
    running = listeners()
    sock = connect(running.port, ATTACKER)
    sock.sendall(pdu_header(0x01, 0xFFFFFFFF))
    streamed = 0
    with pytest.raises(OSError):  # the listener closed the connection: sending fails
        for _ in range(1024):
            sock.sendall(b"\0" * 2**20)
            streamed += 1
    assert streamed < 256  # it stopped reading at once, not after buffering the PDU
    sock.close()
    wait_for(lambda: any("exceeds 262144" in r for r in _refusals(running)), timeout=5)


def _associated(port: int, calling: str) -> socket.socket:
    """A raw connection with an accepted association (A-ASSOCIATE-AC read)."""
    sock = connect(port)
    sock.sendall(associate_rq(calling))
    reply = sock.recv(6)
    assert reply[:1] == b"\x02", reply  # A-ASSOCIATE-AC
    (length,) = struct.unpack(">L", reply[2:6])
    while length:
        length -= len(sock.recv(length))
    return sock


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _ends(running: Listener, calling: str) -> dict[str, Callable[[], None]]:
    """Every way an association (or its request) can end, for one calling AE."""
    port = running.port
    request = associate_rq(calling)

    def released() -> None:
        assoc = _echo(port, calling)
        assert assoc.is_established
        assoc.release()

    def peer_abort() -> None:
        assoc = _echo(port, calling)
        assert assoc.is_established
        assoc.abort()

    def tcp_reset() -> None:
        _reset(_associated(port, calling))

    def oversized_pdata() -> None:
        sock = _associated(port, calling)
        sock.sendall(pdu_header(0x04, 0xFFFFFFF0) + b"\0" * 4096)
        assert read_reply(sock)[:1] == b"\x07"  # A-ABORT
        sock.close()

    def unknown_pdu() -> None:
        sock = _associated(port, calling)
        sock.sendall(pdu_header(0x55, 4) + b"\0" * 4)
        read_reply(sock)
        sock.close()

    def garbage_pdata() -> None:
        sock = _associated(port, calling)
        sock.sendall(pdu_header(0x04, 12) + b"\0\0\0\x08\x01\x03" + b"\xff" * 6)
        read_reply(sock)
        sock.close()

    def malformed_request() -> None:
        sock = connect(port)
        broken = bytearray(request)
        broken[74] = 0x99  # the first item after the AE titles: an unknown item type
        sock.sendall(bytes(broken))
        read_reply(sock, timeout=2)
        sock.close()

    def truncated_request() -> None:
        sock = connect(port)
        sock.sendall(request[: len(request) // 2])
        sock.close()

    def wrong_called_ae() -> None:
        ae = AE(ae_title=calling)
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", port, ae_title="SOMEONE")
        assert assoc.is_rejected

    def idle_until_timeout() -> None:
        sock = _associated(port, calling)
        assert closed_by_peer(sock, within=6)  # network_timeout_s = 2
        sock.close()

    return {
        "released": released,
        "peer abort": peer_abort,
        "TCP reset": tcp_reset,
        "oversized P-DATA": oversized_pdata,
        "unknown PDU type": unknown_pdu,
        "garbage P-DATA": garbage_pdata,
        "malformed request": malformed_request,
        "truncated request": truncated_request,
        "wrong called AE": wrong_called_ae,
        "idle until the network timeout": idle_until_timeout,
    }


def test_every_way_an_association_ends_releases_the_calling_aes_slot(listeners: Start) -> None:
    running = listeners(
        dicom={
            "allowed_aes": [{"ae_title": "VICTIM", "max_associations": 1}],
            "network_timeout_s": 2,
            "association_request_timeout_s": 1,
        }
    )
    ends = _ends(running, "VICTIM")
    for name, end in ends.items():
        end()
        released = wait_for(lambda: running.server.policy.active() == {}, timeout=10)
        assert released, f"slot still held after: {name}"
    # The attack from the report: 17 malformed then 10 truncated requests in the
    # victim's name, then the victim itself.
    for _ in range(17):
        ends["malformed request"]()
    for _ in range(10):
        ends["truncated request"]()
    first = _echo(running.port, "VICTIM")
    assert first.is_established
    second = _echo(running.port, "VICTIM")  # the limit of one still holds
    assert second.is_rejected
    first.release()
    wait_for(lambda: running.server.policy.active() == {}, timeout=10)
    assert not list(running.spool.incoming.iterdir())  # nothing half-written left


def test_idle_sockets_from_many_addresses_leave_room_for_pinned_scanners(
    listeners: Start,
) -> None:
    """The red-team run: 17 addresses x 8 idle sockets filled the 128 pre-association
    slots and scanners got 0 of 3 echoes. Slots are now kept for pinned AEs' addresses."""
    running = listeners(
        dicom={
            "allowed_aes": [{"ae_title": "SCANNER", "host": "127.0.0.1"}],
            "association_request_timeout_s": 20,
        }
    )
    held = [
        connect(running.port, f"127.0.0.{10 + address}") for address in range(17) for _ in range(8)
    ]
    try:

        def waiting() -> int:
            return sum(running.server.gate.pending().values())

        wait_for(lambda: waiting() >= 128 - 16, timeout=20)  # accepted (slowly, under load)
        time.sleep(0.5)
        assert waiting() == 128 - 16  # strangers hold at most total - reserved
        for _ in range(3):  # the pinned scanner still gets its echoes
            assoc = _echo(running.port)
            assert assoc.is_established
            assert assoc.send_c_echo().Status == 0
            assoc.release()
    finally:
        for s in held:
            s.close()
    assert any("kept for trusted ones" in r for r in _refusals(running))


def test_a_tls_certificate_is_bound_to_the_ae_title_it_may_use(listeners: Start, pki: Path) -> None:
    running = listeners(
        dicom={
            "tls": tls_sections(pki),
            "allowed_aes": [
                {"ae_title": "SCANNER", "certificate_name": "client"},
                {"ae_title": "PATHSCAN2", "certificate_name": "pathscan2.hospital.example"},
            ],
        }
    )
    tls = (tls_client(pki), "127.0.0.1")
    own = _echo(running.port, "SCANNER", tls)
    assert own.is_established
    own.release()
    other = _echo(running.port, "PATHSCAN2", tls)  # the same certificate, another AE title
    assert other.is_rejected
    reasons = [a["reason"] or "" for a in DimseAudit(running.catalog).associations(100)]
    assert any("must present a TLS certificate for 'pathscan2" in r for r in reasons)
