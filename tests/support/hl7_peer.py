"""An HL7 v2 receiver for tests, built on python-hl7 (``hl7``), not on hl7apy.

The gateway builds its messages with hl7apy; this peer receives them over MLLP with
python-hl7's asyncio server, parses them with python-hl7 and answers as an EHR would:
``AA``, a NAK (``AE`` with an ERR segment and a reason), or by dropping the connection
without an answer. It keeps every message it parsed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import hl7
from hl7.mllp import HL7StreamReader, HL7StreamWriter, start_hl7_server


@dataclass
class Hl7Peer:
    """What the peer received and how it answers next (``mode``: ack, nak or drop)."""

    port: int = 0
    mode: str = "ack"
    reason: str = "unknown patient"
    received: list[hl7.Message] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def messages(self) -> list[hl7.Message]:
        """The messages received so far (parsed by python-hl7)."""
        with self.lock:
            return list(self.received)


async def _serve(peer: Hl7Peer, reader: HL7StreamReader, writer: HL7StreamWriter) -> None:
    try:
        while not writer.is_closing():
            message = await reader.readmessage()
            with peer.lock:
                peer.received.append(message)
            if peer.mode == "drop":
                writer.close()
                return
            if peer.mode == "nak":
                ack = message.create_ack("AE")
                text = str(ack).rstrip("\r")
                err = f"ERR|||207^Application internal error^HL70357|E||||{peer.reason}"
                ack = hl7.parse(f"{text}|{peer.reason}\r{err}")
            else:
                ack = message.create_ack("AA")
            writer.writemessage(ack)
            await writer.drain()
    except asyncio.IncompleteReadError:
        pass  # the client closed the connection
    finally:
        writer.close()


@contextmanager
def hl7_peer() -> Iterator[Hl7Peer]:
    """Run the peer on a free loopback port (its own event loop in a thread)."""
    peer = Hl7Peer()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop: asyncio.Future[None] | None = None

    async def main() -> None:
        nonlocal stop
        stop = loop.create_future()
        server = await start_hl7_server(lambda r, w: _serve(peer, r, w), host="127.0.0.1", port=0)
        peer.port = server.sockets[0].getsockname()[1]
        started.set()
        async with server:
            await stop

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(10), "the HL7 peer did not start"
    try:
        yield peer
    finally:
        loop.call_soon_threadsafe(lambda: stop is not None and stop.set_result(None))
        thread.join(10)
        loop.close()
