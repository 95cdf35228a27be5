"""``[dicom]`` (the listener, TLS, allowed AEs), ``[[pacs]]`` and ``[pull]`` settings."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from .base import _UID_RE, DEFAULT_SOP_CLASSES, AETitle, _ae_title, _Model


class AllowedAE(_Model):
    """A calling AE allowed to associate, optionally only from one host or certificate."""

    ae_title: AETitle
    host: str | None = None
    max_associations: int | None = Field(default=None, ge=1, le=1000)
    certificate_name: str | None = Field(default=None, min_length=1, max_length=255)

    _v_ae = field_validator("ae_title")(_ae_title)


class TlsSettings(_Model):
    """DICOM TLS for the listener (DICOM PS3.15 Annex B)."""

    enabled: bool = False
    certificate: Path | None = None
    private_key: Path | None = None
    ca_certificates: Path | None = None
    require_client_certificate: bool = True

    @model_validator(mode="after")
    def _files_exist(self) -> TlsSettings:
        if not self.enabled:
            return self
        for name in ("certificate", "private_key"):
            value = getattr(self, name)
            if value is None or not Path(value).is_file():
                raise ValueError(f"{name} must name an existing file when TLS is enabled")
        if self.require_client_certificate and (
            self.ca_certificates is None or not Path(self.ca_certificates).is_file()
        ):
            raise ValueError("ca_certificates must name an existing file to verify clients")
        return self


class StudyAdditions(StrEnum):
    """Who may add instances to a study that already has a result."""

    ANY = "any"  # any allowed sender (of the same patient): the result is superseded
    OPENER = "opener"  # only the AE (or PACS) that sent the study's first instance


class DicomSettings(_Model):
    """The DIMSE listener."""

    ae_title: str = "IHGAMP"
    bind_host: str = "127.0.0.1"
    port: int = Field(default=11112, ge=0, le=65535)
    allowed_aes: tuple[AllowedAE, ...] = ()
    accept_any_ae: bool = False
    max_associations: int = Field(default=16, ge=1, le=1000)
    max_associations_per_ae: int = Field(default=8, ge=1, le=1000)
    sop_classes: tuple[str, ...] = DEFAULT_SOP_CLASSES
    max_pdu: int = Field(default=262144, ge=4096, le=64 * 2**20)
    max_unassociated_per_host: int = Field(default=8, ge=1, le=10_000)
    max_unassociated: int = Field(default=128, ge=1, le=10_000)
    handshake_timeout_s: float = Field(default=5.0, gt=0, le=120)
    association_request_timeout_s: float = Field(default=5.0, gt=0, le=120)
    acse_timeout_s: float = Field(default=30.0, gt=0)
    dimse_timeout_s: float = Field(default=60.0, gt=0)
    network_timeout_s: float = Field(default=120.0, gt=0)
    tls: TlsSettings = TlsSettings()
    patient_identity_key_file: Path | None = None
    scored_study_additions: StudyAdditions = StudyAdditions.ANY
    reserved_unassociated: int | None = Field(default=None, ge=0, le=10_000)
    trusted_networks: tuple[str, ...] = ()

    _v_ae = field_validator("ae_title")(_ae_title)

    def reserved(self) -> int:
        """Pre-association slots kept for trusted addresses (default 16, at most 1/8)."""
        if self.reserved_unassociated is not None:
            return self.reserved_unassociated
        return min(16, self.max_unassociated // 8)

    @field_validator("trusted_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not a network (e.g. 10.20.0.0/16)") from None
        return value

    @field_validator("sop_classes")
    @classmethod
    def _uids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for uid in value:
            if not _UID_RE.match(uid) or len(uid) > 64:
                raise ValueError(f"{uid!r} is not a UID")
        if not value:
            raise ValueError("at least one SOP class must be accepted")
        return value

    @model_validator(mode="after")
    def _someone_may_call(self) -> DicomSettings:
        if self.reserved_unassociated is not None and (
            self.reserved_unassociated >= self.max_unassociated
        ):
            raise ValueError("reserved_unassociated must be less than max_unassociated")
        if not self.allowed_aes and not self.accept_any_ae:
            raise ValueError(
                "no calling AE may associate: list dicom.allowed_aes, or set "
                "dicom.accept_any_ae = true (not recommended outside tests)"
            )
        return self


class PacsNode(_Model):
    """A PACS the gateway queries and retrieves from (DIMSE, DICOMweb, or both)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    ae_title: str | None = None
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    tls_ca: Path | None = None
    tls_certificate: Path | None = None
    tls_private_key: Path | None = None
    retrieve: Literal["move", "get", "dicomweb"] = "move"
    dicomweb_url: str | None = None
    dicomweb_token: str | None = None
    auto_pull: bool = False

    _v_ae = field_validator("ae_title")(lambda v: None if v is None else _ae_title(v))

    @model_validator(mode="after")
    def _reachable(self) -> PacsNode:
        dimse = self.ae_title is not None and self.host is not None and self.port is not None
        if not dimse and self.dicomweb_url is None:
            raise ValueError("give ae_title, host and port (DIMSE), or dicomweb_url, or both")
        if self.retrieve in ("move", "get") and not dimse:
            raise ValueError(f"retrieve = {self.retrieve!r} needs ae_title, host and port")
        if self.retrieve == "dicomweb" and self.dicomweb_url is None:
            raise ValueError("retrieve = 'dicomweb' needs dicomweb_url")
        return self

    @property
    def sender(self) -> str:
        """Who sent what is retrieved from it (the study's first sender, for ``opener``).

        Its AE title, as its C-MOVE sub-operations call us; else ``pacs:<name>``.
        """
        return self.ae_title or f"pacs:{self.name}"


class PullSettings(_Model):
    """The auto-pull poller (for PACS nodes with ``auto_pull = true``)."""

    interval_s: float = Field(default=300.0, gt=0)
    lookback_days: int = Field(default=7, ge=0, le=36500)
    modality: str = "SM"
    timeout_s: float = Field(default=60.0, gt=0)
    max_concurrent: int = Field(default=2, ge=1, le=32)
    lease_s: float = Field(default=1800.0, gt=0)
