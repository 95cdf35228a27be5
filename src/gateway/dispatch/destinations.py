"""Where results go: DICOM C-STORE, DICOMweb STOW-RS, FHIR transaction, HL7 v2 over MLLP.

One class per kind of destination (as mercure's target handlers), registered in
:data:`KINDS` under its ``[dispatch]`` list's key: it says which of a result's outputs it
takes (:class:`Payload`) and how it is built from its configured node. The dispatcher
and the report writer only look kinds up there.

Each destination sends a list of outbox files and raises
:class:`~gateway.errors.DispatchError` with a message an operator can act on when the
peer refuses or cannot be reached. Sends are idempotent on the receiving side: the same
SOP Instance UIDs, the same conditional-create FHIR Bundle.
"""

from __future__ import annotations

import abc
import json
import ssl
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pydicom

from ..config import DicomNode, DicomWebNode, FhirNode, Hl7v2Node, Settings
from ..errors import DispatchError

__all__ = [
    "KINDS",
    "Destination",
    "DicomDestination",
    "DicomWebDestination",
    "FhirDestination",
    "Hl7v2Destination",
    "Payload",
    "build_destinations",
    "destination_kind",
]


class Payload(StrEnum):
    """Which of a result's outputs a destination kind takes."""

    DICOM = "dicom"
    """The DICOM objects: the SR and the map objects."""
    FHIR_BUNDLE = "fhir-bundle"
    """The FHIR transaction Bundle (only for studies with a Patient ID)."""
    HL7V2 = "hl7v2"
    """The ``ORU^R01`` message built for the destination (studies with a Patient ID)."""


class Destination(abc.ABC):
    """A configured result destination.

    A kind is a subclass with ``kind`` (its ``[dispatch]`` list's key), ``payload`` and
    :meth:`from_node`, registered with :func:`destination_kind`.
    """

    name: str
    kind: ClassVar[str]
    payload: ClassVar[Payload]

    def __init__(self, node: Any, timeout_s: float) -> None:
        self.node = node
        self.name: str = node.name
        self.timeout_s = timeout_s

    @classmethod
    def from_node(cls, node: Any, settings: Settings) -> Destination:
        """Build the destination of one configured node (with the dispatch timeout)."""
        return cls(node, settings.dispatch.timeout_s)

    @abc.abstractmethod
    def send(self, files: list[Path]) -> None:
        """Deliver the files (all or nothing from the caller's point of view).

        Raises
        ------
        DispatchError
            If any file is not accepted.
        """


D = TypeVar("D", bound=type[Destination])

#: Every destination kind, by its ``[dispatch]`` list's key.
KINDS: dict[str, type[Destination]] = {}


def destination_kind(cls: D) -> D:
    """Register a destination class under its ``kind``."""
    KINDS[cls.kind] = cls
    return cls


def build_destinations(settings: Settings) -> list[Destination]:
    """The configured destinations, each built by its kind's class."""
    return [KINDS[kind].from_node(node, settings) for kind, node in settings.dispatch.nodes()]


@destination_kind
class DicomDestination(Destination):
    """C-STORE SCU to a DICOM node (a PACS).

    Parameters
    ----------
    node : DicomNode
        AE title, host, port, optional TLS files.
    calling_ae : str
        Our AE title (unless the node sets another).
    timeout_s : float
        Network and DIMSE timeout.
    """

    kind = "dicom"
    payload = Payload.DICOM
    node: DicomNode

    @classmethod
    def from_node(cls, node: Any, settings: Settings) -> DicomDestination:
        """C-STORE as the gateway's AE title (unless the node sets another)."""
        return cls(node, settings.dicom.ae_title, settings.dispatch.timeout_s)

    def __init__(self, node: DicomNode, calling_ae: str, timeout_s: float) -> None:
        super().__init__(node, timeout_s)
        self.calling_ae = node.calling_ae_title or calling_ae

    def _tls(self) -> tuple[ssl.SSLContext, str] | None:
        node = self.node
        if node.tls_ca is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(node.tls_ca))
        if node.tls_certificate and node.tls_private_key:
            ctx.load_cert_chain(str(node.tls_certificate), str(node.tls_private_key))
        return ctx, node.host

    def send(self, files: list[Path]) -> None:
        """Store every file over one association; every status must be success."""
        from pynetdicom import AE

        datasets = [pydicom.dcmread(f) for f in files]
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        for sop_class, syntax in sorted(
            {(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}
        ):
            ae.add_requested_context(sop_class, syntax)
        node = self.node
        assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, tls_args=self._tls())
        if not assoc.is_established:
            why = "rejected the association" if assoc.is_rejected else "is unreachable"
            raise DispatchError(
                f"{node.name} ({node.ae_title}@{node.host}:{node.port}) {why}; check that it is "
                f"running and lists {self.calling_ae} as a known modality"
            )
        try:
            for dataset, path in zip(datasets, files, strict=True):
                status = assoc.send_c_store(dataset)
                code = int(status.Status) if status and "Status" in status else None
                if code is None:
                    raise DispatchError(f"{node.name}: no response to C-STORE of {path.name}")
                if code not in (0x0000, 0xB000, 0xB006, 0xB007):
                    raise DispatchError(f"{node.name}: C-STORE of {path.name} failed 0x{code:04X}")
        finally:
            if assoc.is_established:
                assoc.release()


@destination_kind
class DicomWebDestination(Destination):
    """STOW-RS to a DICOMweb server (dicomweb-client)."""

    kind = "dicomweb"
    payload = Payload.DICOM
    node: DicomWebNode

    def send(self, files: list[Path]) -> None:
        """Store the instances in one STOW-RS request."""
        import requests
        from dicomweb_client.api import DICOMwebClient

        headers = {"Authorization": f"Bearer {self.node.token}"} if self.node.token else None
        client = DICOMwebClient(url=self.node.url, headers=headers)
        datasets = [pydicom.dcmread(f) for f in files]
        try:
            response = client.store_instances(datasets)
        except requests.exceptions.RequestException as exc:
            raise DispatchError(f"{self.name}: STOW-RS to {self.node.url} failed: {exc}") from exc
        failed = response.get("00081198", {}).get("Value", []) if response else []
        if failed:
            raise DispatchError(f"{self.name}: the server refused {len(failed)} instance(s)")


@destination_kind
class FhirDestination(Destination):
    """POST of the transaction Bundle to a FHIR server (conditional creates inside)."""

    kind = "fhir"
    payload = Payload.FHIR_BUNDLE
    node: FhirNode

    def send(self, files: list[Path]) -> None:
        """Post each Bundle; every entry must come back 2xx."""
        import httpx

        headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        if self.node.token:
            headers["Authorization"] = f"Bearer {self.node.token}"
        for path in files:
            body = path.read_bytes()
            try:
                response = httpx.post(
                    self.node.url.rstrip("/") + "/",
                    content=body,
                    headers=headers,
                    timeout=self.timeout_s,
                )
            except httpx.HTTPError as exc:
                raise DispatchError(f"{self.name}: {self.node.url} unreachable: {exc}") from exc
            if response.status_code // 100 != 2:
                raise DispatchError(
                    f"{self.name}: {self.node.url} answered {response.status_code}: "
                    f"{response.text[:200]}"
                )
            _check_transaction_response(self.name, response.json())


_START, _END = b"\x0b", b"\x1c\x0d"
_MAX_ACK = 1 << 20


@destination_kind
class Hl7v2Destination(Destination):
    """``ORU^R01`` over MLLP to an HL7 v2 receiver; its acknowledgement decides.

    ``AA`` (or ``CA``) is delivered; ``AE``/``AR`` (or ``CE``/``CR``), no answer, or a
    dropped connection fail the attempt with the reason, so the delivery is retried and
    dead-lettered as every other. The receiver's text is kept with the reason, without the
    message's patient identifier and name (logs carry neither).
    """

    kind = "hl7v2"
    payload = Payload.HL7V2
    node: Hl7v2Node

    def send(self, files: list[Path]) -> None:
        """Send each message on one connection; each must be acknowledged ``AA``."""
        import socket

        node = self.node
        where = f"{self.name} ({node.host}:{node.port})"
        try:
            with socket.create_connection((node.host, node.port), self.timeout_s) as sock:
                sock.settimeout(self.timeout_s)
                for path in files:
                    message = path.read_bytes()
                    sock.sendall(_START + message + _END)
                    _check_ack(where, _read_block(sock, where), message)
        except OSError as exc:
            raise DispatchError(f"{where} unreachable or timed out: {exc}") from exc


def _read_block(sock: Any, where: str) -> bytes:
    """One MLLP block from ``sock`` (its content, without the framing)."""
    data = b""
    while _END not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise DispatchError(f"{where} closed the connection without an acknowledgement")
        data += chunk
        if len(data) > _MAX_ACK:
            raise DispatchError(f"{where} answered more than {_MAX_ACK} bytes")
    return data.split(_END, 1)[0].lstrip(_START)


def _check_ack(where: str, ack: bytes, message: bytes) -> None:
    """Raise unless ``ack`` accepts ``message`` (MSA-1 ``AA``/``CA``, MSA-2 its control id)."""
    from hl7apy.exceptions import HL7apyException
    from hl7apy.parser import parse_message

    try:
        parsed = parse_message(ack.decode("utf-8", "replace").replace("\n", "\r").strip())
        code = str(parsed.msa.msa_1.value)
        control = str(parsed.msa.msa_2.value)
        text = str(parsed.msa.msa_3.value or "")
        if "ERR" in {s.name for s in parsed.children}:
            text = " ".join(filter(None, (text, str(parsed.err.err_8.value or ""))))
    except (HL7apyException, AttributeError, IndexError, ValueError) as exc:
        raise DispatchError(f"{where}: unreadable acknowledgement ({type(exc).__name__})") from None
    sent = parse_message(message.decode().strip(), find_groups=False)
    if control != str(sent.msh.msh_10.value):
        raise DispatchError(f"{where}: the acknowledgement names another message ({control})")
    if code not in ("AA", "CA"):
        reason = _without_patient(text, sent)[:200] or "no reason given"
        raise DispatchError(f"{where} refused the result ({code}): {reason}")


def _without_patient(text: str, sent: Any) -> str:
    """``text`` with the message's patient identifier and name parts masked."""
    pid = sent.pid
    secrets = [str(pid.pid_3.value).split("^", 1)[0], *str(pid.pid_5.value).split("^")]
    for secret in sorted({s for s in secrets if len(s) > 1}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _check_transaction_response(name: str, bundle: Any) -> None:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise DispatchError(f"{name}: the answer is not a FHIR Bundle")
    for entry in bundle.get("entry", []):
        status = str(entry.get("response", {}).get("status", ""))
        if not status.startswith("2"):
            raise DispatchError(f"{name}: transaction entry failed: {json.dumps(entry)[:200]}")
