"""Gateway configuration: one TOML file plus environment overrides, validated once.

Every key can be overridden by an environment variable named ``IHGAMP__`` followed by
the key's path in upper case with ``__`` between levels, for example
``IHGAMP__DICOM__PORT=11112`` or ``IHGAMP__MODEL__DEVICE=cuda``. Values are parsed as
TOML values (``11112``, ``true``, ``["A", "B"]``), falling back to a plain string.

:func:`load_settings` returns a frozen :class:`Settings`; an invalid value raises
:class:`~gateway.errors.ConfigError` naming the key, e.g.
``dicom.port: Input should be less than or equal to 65535``.
Every key is documented with its default in ``docs/configuration.md``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from ihgamp_core.analysis.contract import Stain
from ihgamp_core.analysis.metadata import MetadataRules, StainRule
from ihgamp_core.analysis.routing import RoutingLimits
from ihgamp_core.errors import ParameterError

from .analyses.registry import LEGACY_ANALYSIS
from .errors import ConfigError

__all__ = [
    "AllowedAE",
    "AnalysesSettings",
    "ApiToken",
    "DicomNode",
    "DicomWebNode",
    "DispatchSettings",
    "FhirNode",
    "FhirSettings",
    "HttpSettings",
    "PacsNode",
    "PullSettings",
    "TriageSettings",
    "CatalogSettings",
    "CompletionSettings",
    "DicomSettings",
    "LoggingSettings",
    "ModelSettings",
    "NodeSettings",
    "QueueBackend",
    "Settings",
    "StainRuleSettings",
    "StorageSettings",
    "StudyAdditions",
    "TlsSettings",
    "TokenAccess",
    "WorkerSettings",
    "load_settings",
]

ENV_PREFIX = "IHGAMP__"
_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable, no backslash, 1..16
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")

#: SOP classes accepted by default: VL Whole Slide Microscopy Image, Comprehensive 3D SR.
DEFAULT_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.77.1.6", "1.2.840.10008.5.1.4.1.1.88.34")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _ae_title(value: str) -> str:
    value = value.strip()
    if not _AE_RE.match(value):
        raise ValueError("an AE title is 1-16 printable characters without backslash")
    return value


AETitle = Annotated[str, Field(description="DICOM AE title")]


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


class StorageSettings(_Model):
    """Where received instances and results are kept."""

    spool_dir: Path = Path("var/spool")
    outbox_dir: Path = Path("var/outbox")
    min_free_mb: int = Field(default=2048, ge=0)


class CatalogSettings(_Model):
    """The catalog database.

    ``password_file`` keeps the PostgreSQL password out of ``url`` (and out of
    ``ihgamp config check``): a compose or Kubernetes secret mounted as a file.
    """

    url: str = "sqlite:///var/catalog.db"
    password_file: Path | None = None

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        return value

    @model_validator(mode="after")
    def _password_file(self) -> CatalogSettings:
        if self.password_file is None:
            return self
        if not self.url.startswith("postgresql"):
            raise ValueError("password_file applies to a postgresql:// url only")
        if not Path(self.password_file).is_file():
            raise ValueError(f"password_file {self.password_file} does not exist")
        return self

    def connect_url(self) -> str:
        """The URL to connect with: ``url`` plus the password from ``password_file``."""
        if self.password_file is None:
            return self.url
        from sqlalchemy.engine import make_url

        password = Path(self.password_file).read_text().strip()
        return make_url(self.url).set(password=password).render_as_string(hide_password=False)


class CompletionSettings(_Model):
    """When a study counts as completely received (timers persist across restarts)."""

    leader_lease_s: float = Field(default=15.0, gt=0)
    series_stable_s: float = Field(default=30.0, ge=0)
    study_stable_s: float = Field(default=60.0, ge=0)
    force_after_s: float = Field(default=3600.0, gt=0)
    expected_series: int = Field(default=0, ge=0)
    poll_interval_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> CompletionSettings:
        if self.force_after_s < self.study_stable_s:
            raise ValueError("force_after_s must be at least study_stable_s")
        return self


class QueueBackend(StrEnum):
    """How queued jobs reach workers."""

    INPROCESS = "inprocess"  # worker threads poll the catalog's job rows
    CELERY = "celery"  # a broker carries the job id to Celery workers


class WorkerSettings(_Model):
    """The job queue and scoring workers."""

    backend: QueueBackend = QueueBackend.INPROCESS
    count: int = Field(default=1, ge=0, le=64)
    lease_s: float = Field(default=600.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff_s: float = Field(default=30.0, ge=0)
    backoff_max_s: float = Field(default=1800.0, ge=0)
    stop_timeout_s: float = Field(default=30.0, ge=0, le=3600)
    poll_interval_s: float = Field(default=1.0, gt=0)
    broker_url: str | None = None
    broker_password_file: Path | None = None
    queue_name: str = Field(default="ihgamp-score", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    republish_after_s: float = Field(default=600.0, gt=0)
    sweep_interval_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _broker(self) -> WorkerSettings:
        if self.backend == QueueBackend.CELERY:
            if not self.broker_url:
                raise ValueError(
                    "backend 'celery' needs broker_url (amqp://... for RabbitMQ, "
                    "redis://... for Redis; or IHGAMP__WORKER__BROKER_URL)"
                )
            if not self.broker_url.startswith(("amqp://", "amqps://", "redis://", "rediss://")):
                raise ValueError("broker_url must be amqp(s):// (RabbitMQ) or redis(s):// (Redis)")
        if self.broker_password_file is not None:
            if not self.broker_url:
                raise ValueError("broker_password_file needs broker_url")
            if not Path(self.broker_password_file).is_file():
                raise ValueError(f"broker_password_file {self.broker_password_file} does not exist")
        return self

    def broker_connect_url(self) -> str | None:
        """The URL to connect with: ``broker_url`` plus the password from its file.

        ``broker_password_file`` keeps the broker's password out of the configuration (a
        compose or Kubernetes secret mounted as a file), as ``catalog.password_file`` does.
        """
        if self.broker_url is None or self.broker_password_file is None:
            return self.broker_url
        from urllib.parse import quote, urlsplit, urlunsplit

        password = quote(Path(self.broker_password_file).read_text().strip(), safe="")
        parts = urlsplit(self.broker_url)
        user = quote(parts.username or "", safe="")
        host = parts.hostname or ""
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))

    def broker_redacted(self) -> str | None:
        """The broker URL without its password (for logs and ``config check``)."""
        if self.broker_url is None:
            return None
        return redact_url(self.broker_url)


class NodeSettings(_Model):
    """One node of a cluster (one process of ``ihgamp serve``)."""

    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"


class ModelSettings(_Model):
    """Model files and scoring options."""

    head: Path | None = None
    backbone_checkpoint: Path | None = None
    device: str = "auto"
    max_tiles: int | None = Field(default=None, ge=1)
    min_tiles: int = Field(default=16, ge=1)
    batch_size: int = Field(default=0, ge=0, le=4096)
    readers: int = Field(default=2, ge=1, le=64)
    pipeline: Literal["fast", "reference"] = "fast"
    precision: Literal["auto", "fp32", "fp16", "bf16", "int8"] = "auto"

    @field_validator("head", "backbone_checkpoint")
    @classmethod
    def _exists(cls, value: Path | None) -> Path | None:
        if value is not None and not Path(value).exists():
            raise ValueError(f"{value} does not exist")
        return value

    @model_validator(mode="after")
    def _int8_on_cpu(self) -> ModelSettings:
        if self.precision == "int8" and self.device.startswith("cuda"):
            raise ValueError("precision int8 runs on the CPU only; use fp16 with a GPU device")
        return self


class StainRuleSettings(_Model):
    """A site stain rule: ``pattern`` found in ``fields`` means ``stain``."""

    pattern: str = Field(min_length=1, max_length=200)
    stain: Literal["he", "ihc-her2", "ihc-other"]
    fields: tuple[
        Literal[
            "series_description", "study_description", "container_identifier", "source", "stain"
        ],
        ...,
    ] = ("series_description", "container_identifier")
    overrides: bool = False


class AnalysesSettings(_Model):
    """Which analyses run, their settings, and how slide metadata is read for routing.

    The default (``enabled = ["hrd"]``, ``default_stain = "he"``) is the gateway before
    analyses existed: every slide without stain information is an H&E slide for HRD.
    Each registered analysis has a table ``[analyses.<name>]`` (its entry's settings,
    :mod:`gateway.analyses`); ``plugins`` names modules that register a site's own.
    """

    enabled: tuple[str, ...] = Field(default=(LEGACY_ANALYSIS,), min_length=1)
    plugins: tuple[str, ...] = ()
    options: dict[str, Any] = Field(default_factory=dict, exclude=True)
    default_stain: Literal["he", "ihc-her2", "ihc-other", "none"] = "he"
    default_body_part: str | None = Field(default=None, pattern=r"^[A-Z_ ]{1,16}$")
    block_pattern: str | None = None
    stain_rules: tuple[StainRuleSettings, ...] = ()
    max_slides_per_study: int = Field(default=20, ge=1, le=10_000)
    max_blocks_per_study: int = Field(default=10, ge=1, le=10_000)

    @model_validator(mode="before")
    @classmethod
    def _analysis_tables(cls, data: Any) -> Any:
        """Move each analysis' ``[analyses.<name>]`` table (and old flat keys) into ``options``."""
        if not isinstance(data, Mapping):
            return data
        from .analyses import PluginError, entries, load_plugins

        data = dict(data)
        plugins = data.get("plugins") or ()
        if isinstance(plugins, str):
            plugins = (plugins,)
        if not isinstance(plugins, list | tuple) or not all(isinstance(p, str) for p in plugins):
            raise ValueError("plugins: a list of importable module names")
        try:
            load_plugins(tuple(plugins))
        except PluginError as exc:
            raise ValueError(str(exc)) from None
        options: dict[str, Any] = {}
        for item in entries():
            if item.name in cls.model_fields:
                raise ValueError(f"an analysis cannot be named {item.name!r} (an [analyses] key)")
            table = data.pop(item.name, None)
            moved = {new: data.pop(old) for old, new in item.legacy_keys.items() if old in data}
            both = sorted(
                f"{old} and [analyses.{item.name}] {new}"
                for old, new in item.legacy_keys.items()
                if new in moved and isinstance(table, Mapping) and new in table
            )
            if both:
                raise ValueError(f"give one of {'; '.join(both)}, not both")
            if isinstance(table, item.settings):
                options[item.name] = table
                continue
            if table is not None and not isinstance(table, Mapping):
                raise ValueError(f"{item.name}: a table of that analysis' settings")
            try:
                options[item.name] = item.settings.model_validate({**moved, **(table or {})})
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in (item.name, *first["loc"]))
                raise ValueError(f"{where}: {first['msg']}") from None
        data["options"] = options
        return data

    @model_validator(mode="after")
    def _valid_rules(self) -> AnalysesSettings:
        from .analyses import names

        known = names()
        for name in self.enabled:
            if name not in known:
                raise ValueError(
                    f"enabled: unknown analysis {name!r} (known: {', '.join(known)}; a site's "
                    "own analysis is added with analyses.plugins)"
                )
        if len(set(self.enabled)) != len(self.enabled):
            raise ValueError("each analysis is enabled once")
        try:  # the engine's own checks (regular expressions, the block group)
            self.metadata_rules()
        except ParameterError as exc:
            raise ValueError(str(exc)) from None
        return self

    @model_serializer(mode="wrap")
    def _with_tables(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dump each analysis' table under its name (``[analyses.<name>]``), as read."""
        out: dict[str, Any] = handler(self)
        for name, table in self.options.items():
            out[name] = table.model_dump(mode="json")
        return out

    def settings_of(self, name: str) -> Any:
        """The ``[analyses.<name>]`` table of a registered analysis (its defaults if absent)."""
        from .analyses import entry

        found = self.options.get(name)
        return found if found is not None else entry(name).settings()

    def metadata_rules(self) -> MetadataRules:
        """The engine's rules for reading stain, body part and block from slide headers."""
        return MetadataRules(
            stain_rules=tuple(
                StainRule(r.pattern, Stain(r.stain), r.fields, r.overrides)
                for r in self.stain_rules
            ),
            block_pattern=self.block_pattern,
            default_stain=None if self.default_stain == "none" else Stain(self.default_stain),
            default_body_part=self.default_body_part,
        )

    def routing_limits(self) -> RoutingLimits:
        """The engine's caps on the work one study may ask for."""
        return RoutingLimits(self.max_slides_per_study, self.max_blocks_per_study)


class TriageSettings(_Model):
    """Triage policy: histologies the model is not validated for, and histology sources."""

    not_validated_patterns: tuple[str, ...] = (r"squamous", r"\bSCC\b", r"keratini[sz]ing")
    histology_by_accession: dict[str, str] = Field(default_factory=dict)
    default_histology: str | None = None

    @field_validator("not_validated_patterns")
    @classmethod
    def _regexes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
        return value


class FhirSettings(_Model):
    """How patients are identified in FHIR resources."""

    patient_id_systems: dict[str, str] = Field(default_factory=dict)
    default_patient_id_system: str = "urn:ihgamp:patient-id"


class TokenAccess(StrEnum):
    """What an API token may do."""

    READ = "read"
    """Read results: ``/api/studies``, ``/fhir``, heatmap PNGs, the OpenAPI description."""
    OPERATE = "operate"
    """Everything ``read`` may, plus the status page (login), requeue, redispatch, audit."""


def _expiry(value: dt.datetime | dt.date | None) -> dt.datetime | dt.date | None:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        raise ValueError("give a UTC offset, e.g. 2027-01-31T00:00:00Z, or a date")
    return value


class ApiToken(_Model):
    """A named bearer token (one consumer may hold several, for rotation)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    token: SecretStr | None = Field(default=None, min_length=16)
    token_file: Path | None = None
    expires: dt.datetime | dt.date | None = None
    access: TokenAccess = TokenAccess.READ

    _v_expires = field_validator("expires")(_expiry)

    @field_validator("expires", mode="before")
    @classmethod
    def _date_text(cls, value: Any) -> Any:
        # "2027-01-01" is a date (an environment override arrives as text), not a naive time.
        if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            return dt.date.fromisoformat(value.strip())
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> ApiToken:
        if (self.token is None) == (self.token_file is None):
            raise ValueError(f"token {self.name!r}: give exactly one of token and token_file")
        return self

    def expires_at(self) -> dt.datetime | None:
        """When the token stops working (a date means 00:00 UTC of that day)."""
        if isinstance(self.expires, dt.datetime) or self.expires is None:
            return self.expires
        return dt.datetime(self.expires.year, self.expires.month, self.expires.day, tzinfo=dt.UTC)

    def secret(self) -> str:
        """The token's value (read from ``token_file`` when that is given).

        Raises
        ------
        ConfigError
            If the file cannot be read or holds fewer than 16 characters.
        """
        if self.token is not None:
            return self.token.get_secret_value()
        assert self.token_file is not None  # noqa: S101 - checked by _one_secret
        try:
            value = Path(self.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"token {self.name!r}: cannot read {self.token_file}: {exc}"
            ) from None
        if len(value) < 16:
            raise ConfigError(f"token {self.name!r}: {self.token_file} holds < 16 characters")
        return value


class HttpSettings(_Model):
    """The HTTP service: health, metrics, status page, API, FHIR endpoint."""

    enabled: bool = True
    bind_host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    token: SecretStr | None = Field(default=None, min_length=16)
    token_file: Path | None = None
    tokens: tuple[ApiToken, ...] = ()
    session_max_age_s: float = Field(default=8 * 3600.0, ge=60, le=7 * 86400)
    cookie_secure: bool = False
    metrics_auth: bool = False
    max_connections: int = Field(default=256, ge=4, le=65536)
    max_connections_per_client: int = Field(default=32, ge=1, le=65536)
    login_failures_before_backoff: int = Field(default=5, ge=1, le=1000)
    header_timeout_s: float = Field(default=10.0, gt=0, le=600)
    keep_alive_s: int = Field(default=5, ge=1, le=600)
    max_header_bytes: int = Field(default=16384, ge=1024, le=1048576)
    access_log: bool = True

    @model_validator(mode="after")
    def _token(self) -> HttpSettings:
        if self.token_file is not None and not Path(self.token_file).is_file():
            raise ValueError(f"token_file {self.token_file} does not exist")
        for entry in self.tokens:
            if entry.token_file is not None and not Path(entry.token_file).is_file():
                raise ValueError(f"token {entry.name!r}: {entry.token_file} does not exist")
        names = [t.name for t in self.api_tokens()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"token names must be unique: {duplicates} (http.token is 'default')")
        return self

    def api_tokens(self) -> tuple[ApiToken, ...]:
        """Every configured token; ``http.token`` / ``token_file`` is the one named ``default``.

        The single token predates named tokens and keeps its meaning: no expiry, and
        ``operate`` access.
        """
        legacy: tuple[ApiToken, ...] = ()
        if self.token is not None or self.token_file is not None:
            legacy = (
                ApiToken(
                    name="default",
                    token=self.token,
                    token_file=None if self.token is not None else self.token_file,
                    access=TokenAccess.OPERATE,
                ),
            )
        return legacy + self.tokens


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


#: The ``[dispatch]`` lists of destinations, one per kind (each a class in
#: :data:`gateway.dispatch.destinations.KINDS`).
DESTINATION_KINDS = ("dicom", "dicomweb", "fhir")


class DispatchSettings(_Model):
    """Result destinations (the local outbox is always written) and retry policy."""

    dicom: tuple[DicomNode, ...] = ()
    dicomweb: tuple[DicomWebNode, ...] = ()
    fhir: tuple[FhirNode, ...] = ()
    max_attempts: int = Field(default=8, ge=1, le=1000)
    backoff_s: float = Field(default=30.0, ge=0)
    backoff_max_s: float = Field(default=3600.0, ge=0)
    timeout_s: float = Field(default=30.0, gt=0)
    poll_interval_s: float = Field(default=2.0, gt=0)

    def nodes(self) -> list[tuple[str, DicomNode | DicomWebNode | FhirNode]]:
        """Every configured destination as ``(kind, node)``; the kind is its list's key.

        The dispatcher and the report writer look each kind up in
        :data:`gateway.dispatch.destinations.KINDS` (one class per kind).
        """
        out: list[tuple[str, DicomNode | DicomWebNode | FhirNode]] = []
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


class LoggingSettings(_Model):
    """Log output of the service."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class Settings(_Model):
    """The whole, validated gateway configuration."""

    dicom: DicomSettings = Field(default_factory=dict, validate_default=True)  # type: ignore[arg-type]
    storage: StorageSettings = StorageSettings()
    catalog: CatalogSettings = CatalogSettings()
    completion: CompletionSettings = CompletionSettings()
    worker: WorkerSettings = WorkerSettings()
    model: ModelSettings = ModelSettings()
    analyses: AnalysesSettings = Field(default_factory=lambda: AnalysesSettings())
    triage: TriageSettings = TriageSettings()
    fhir: FhirSettings = FhirSettings()
    http: HttpSettings = HttpSettings()
    dispatch: DispatchSettings = DispatchSettings()
    pacs: tuple[PacsNode, ...] = ()
    pull: PullSettings = PullSettings()
    logging: LoggingSettings = LoggingSettings()
    node: NodeSettings = NodeSettings()

    @model_validator(mode="after")
    def _unique_pacs(self) -> Settings:
        names = [p.name for p in self.pacs]
        if len(names) != len(set(names)):
            raise ValueError("pacs names must be unique")
        return self

    def node_name(self) -> str:
        """The node's name: ``node.name``, else host name and DICOM port.

        It names the node's own ``.incoming`` folder in a shared spool and its leases,
        so it must differ between nodes; the port keeps two receivers on one host apart.
        """
        return self.node.name or f"{socket.gethostname()}-{self.dicom.port}"

    def pacs_node(self, name: str) -> PacsNode:
        """The PACS called ``name``.

        Raises
        ------
        ConfigError
            If there is none.
        """
        for node in self.pacs:
            if node.name == name:
                return node
        known = ", ".join(p.name for p in self.pacs) or "none configured"
        raise ConfigError(f"no PACS named {name!r} in the configuration ([[pacs]]: {known})")


def redact_url(url: str) -> str:
    """Hide a password in a URL (``scheme://user:***@host``)."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = _parse_env_value(raw)
    return data


def _format_error(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{key}: {msg}")
    return f"invalid configuration ({origin}): " + "; ".join(lines)


def load_settings(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> Settings:
    """Read, override and validate the configuration.

    Parameters
    ----------
    path : Path or None
        TOML file; ``None`` starts from the defaults.
    environ : mapping, optional
        Environment to read ``IHGAMP__*`` overrides from (``os.environ`` by default).
    base_dir : Path, optional
        Folder relative paths are resolved against (default: the TOML file's folder,
        or the current directory).

    Raises
    ------
    ConfigError
        If the file cannot be read or a value is invalid; the message names the key.
    """
    data: dict[str, Any] = {}
    origin = "defaults"
    if path is not None:
        origin = str(path)
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"configuration file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    data = _apply_env(data, os.environ if environ is None else environ)
    root = base_dir or (Path(path).resolve().parent if path is not None else Path.cwd())
    data = _resolve_paths(data, root)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, origin)) from None


_PATH_KEYS = {
    ("storage", "spool_dir"),
    ("storage", "outbox_dir"),
    ("model", "head"),
    ("model", "backbone_checkpoint"),
    ("dicom", "tls", "certificate"),
    ("dicom", "tls", "private_key"),
    ("dicom", "tls", "ca_certificates"),
    ("http", "token_file"),
    ("catalog", "password_file"),
    ("worker", "broker_password_file"),
}


def _resolve_paths(data: dict[str, Any], root: Path) -> dict[str, Any]:
    for keys in _PATH_KEYS:
        node: Any = data
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            value = node[keys[-1]]
            node[keys[-1]] = None if value == "" else str((root / value).resolve())
    http = data.get("http")
    for entry in http.get("tokens", []) if isinstance(http, dict) else []:
        if isinstance(entry, dict) and isinstance(entry.get("token_file"), str):
            entry["token_file"] = str((root / entry["token_file"]).resolve())
    catalog = data.get("catalog")
    if isinstance(catalog, dict) and isinstance(catalog.get("url"), str):
        url = catalog["url"]
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            catalog["url"] = "sqlite:///" + str((root / url[len("sqlite:///") :]).resolve())
    if "catalog" not in data:
        data["catalog"] = {"url": "sqlite:///" + str((root / "var" / "catalog.db").resolve())}
    storage = data.setdefault("storage", {})
    if isinstance(storage, dict):
        for key, default in (("spool_dir", "var/spool"), ("outbox_dir", "var/outbox")):
            storage.setdefault(key, str((root / default).resolve()))
    return data
