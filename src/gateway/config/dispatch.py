"""``[dispatch]``: result destinations, one list per kind, and the retry policy."""

from __future__ import annotations

from pathlib import Path

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from .base import _ae_title, _Model


class DicomNode(_Model):
    """A DICOM node results are sent to with C-STORE."""

    name: str = Field(min_length=1, max_length=64)
    ae_title: str
    host: str
    port: int = Field(ge=1, le=65535)
    calling_ae_title: str | None = None
    tls_ca: Path | None = None
    tls_certificate: Path | None = None
    tls_private_key: Path | None = None

    _v_ae = field_validator("ae_title")(_ae_title)


class DicomWebNode(_Model):
    """A DICOMweb server results are sent to with STOW-RS."""

    name: str = Field(min_length=1, max_length=64)
    url: str
    token: str | None = None


class FhirNode(_Model):
    """A FHIR server the transaction Bundle is posted to."""

    name: str = Field(min_length=1, max_length=64)
    url: str
    token: str | None = None


_HD = r"^[^|^~\\&]{1,180}$"  # an HL7 HD value: no HL7 delimiter characters


class Hl7v2Node(_Model):
    """An HL7 v2 receiver (an EHR or laboratory system) results are sent to over MLLP.

    One ORU^R01 per result; ``sending_*`` and ``receiving_*`` fill MSH-3 to MSH-6.
    """

    name: str = Field(min_length=1, max_length=64)
    host: str
    port: int = Field(ge=1, le=65535)
    sending_application: str = Field(default="IHGAMP", pattern=_HD)
    sending_facility: str = Field(default="IHGAMP", pattern=_HD)
    receiving_application: str = Field(pattern=_HD)
    receiving_facility: str = Field(pattern=_HD)
    processing_id: str = Field(default="P", pattern="^[PDT]$")


#: The ``[dispatch]`` lists of destinations, one per kind (each a class in
#: :data:`gateway.dispatch.destinations.KINDS`).
DESTINATION_KINDS = ("dicom", "dicomweb", "fhir", "hl7v2")


#: A configured destination of any kind.
Destination = DicomNode | DicomWebNode | FhirNode | Hl7v2Node


class DispatchSettings(_Model):
    """Result destinations (the local outbox is always written) and retry policy."""

    dicom: tuple[DicomNode, ...] = ()
    dicomweb: tuple[DicomWebNode, ...] = ()
    fhir: tuple[FhirNode, ...] = ()
    hl7v2: tuple[Hl7v2Node, ...] = ()
    max_attempts: int = Field(default=8, ge=1, le=1000)
    backoff_s: float = Field(default=30.0, ge=0)
    backoff_max_s: float = Field(default=3600.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)
    poll_interval_s: float = Field(default=2.0, gt=0)

    def nodes(self) -> list[tuple[str, Destination]]:
        """Every configured destination as ``(kind, node)``; the kind is its list's key.

        The dispatcher and the report writer look each kind up in
        :data:`gateway.dispatch.destinations.KINDS` (one class per kind).
        """
        out: list[tuple[str, Destination]] = []
        for kind in DESTINATION_KINDS:
            out += [(kind, node) for node in getattr(self, kind)]
        return out

    @model_validator(mode="after")
    def _unique_names(self) -> DispatchSettings:
        names = [node.name for _, node in self.nodes()]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"destination names must be unique: {sorted(duplicates)}")
        return self
