"""A local HL7 v2 receiver for the demo: a laboratory system that acknowledges ``ORU^R01``.

hl7apy's MLLP server on a free loopback port, in a thread. Every ``ORU^R01`` it receives
is parsed, kept (:attr:`LocalLis.received`) and acknowledged ``AA`` with an hl7apy-built
``ACK`` naming its control id, so the demo shows the gateway's HL7 v2 delivery end to end
as it shows the SR in the PACS and the Observation on the FHIR endpoint.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from hl7apy.core import Message
from hl7apy.mllp import AbstractHandler, MLLPServer
from hl7apy.parser import parse_message

__all__ = ["LocalLis", "ReceivedOru"]

_START, _END = "\x0b", "\x1c\r"


@dataclass(frozen=True)
class ReceivedOru:
    """What the receiver kept of one message: its control id and OBX values by code."""

    control_id: str
    status: str
    values: dict[str, str]


class _Acknowledge(AbstractHandler):  # type: ignore[misc]
    def __init__(self, message: str, lis: LocalLis) -> None:
        super().__init__(message)
        self.lis = lis

    def reply(self) -> str:
        parsed = parse_message(self.incoming_message, find_groups=False)
        control = str(parsed.msh.msh_10.value)
        values = {}
        status = ""
        for obx in parsed.obx:
            values[str(obx.obx_3.value).split("^", 1)[0]] = str(obx.obx_5.value)
            status = str(obx.obx_11.value)
        with self.lis.lock:
            self.lis.received.append(ReceivedOru(control, status, values))
        ack = Message("ACK", version="2.5.1")
        ack.msh.msh_3 = self.lis.application
        ack.msh.msh_4 = self.lis.facility
        ack.msh.msh_5 = parsed.msh.msh_3.value
        ack.msh.msh_6 = parsed.msh.msh_4.value
        ack.msh.msh_7 = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S")
        ack.msh.msh_9 = "ACK^R01^ACK"
        ack.msh.msh_10 = f"ACK{control}"[:20]
        ack.msh.msh_11 = parsed.msh.msh_11.value
        ack.msa.msa_1 = "AA"
        ack.msa.msa_2 = control
        return f"{_START}{ack.to_er7()}{_END}"


class LocalLis:
    """An HL7 v2 receiver on loopback that acknowledges every ``ORU^R01``.

    Parameters
    ----------
    application, facility : str
        Its MSH-3 and MSH-4 in acknowledgements (what destinations name as receiving).
    """

    def __init__(self, application: str = "DEMO-LIS", facility: str = "PATHOLOGY") -> None:
        self.application = application
        self.facility = facility
        self.received: list[ReceivedOru] = []
        self.lock = threading.Lock()
        handlers: dict[str, Any] = {"ORU^R01^ORU_R01": (_Acknowledge, self)}
        self._server = MLLPServer("127.0.0.1", 0, handlers)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The loopback port it listens on."""
        return int(self._server.server_address[1])

    def start(self) -> LocalLis:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo-lis", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def find(self, control_id: str) -> ReceivedOru | None:
        """The message received with ``control_id``, if any."""
        with self.lock:
            return next((m for m in self.received if m.control_id == control_id), None)
