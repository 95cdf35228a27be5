"""Catalog tables (SQLAlchemy 2 ORM). Their history is in :mod:`.migrations` (Alembic).

The catalog holds UIDs, accession numbers, states, timings and file locations. Patient
data stays in the spool's DICOM files and is read when a report needs it; the one
exception is the ``observations`` table behind the FHIR endpoint, whose Observations
name their patient by identifier.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from ..analyses.registry import LEGACY_ANALYSIS

__all__ = [
    "AccessAction",
    "AnalysisResult",
    "Association",
    "AttemptOutcome",
    "DELIVERY_OUTCOMES",
    "JOB_OUTCOMES",
    "Base",
    "Delivery",
    "DeliveryState",
    "FhirResource",
    "HttpAccess",
    "HttpSession",
    "Instance",
    "Job",
    "JobState",
    "LEGACY_ANALYSIS",
    "Lease",
    "ObservationIdentifier",
    "PullCursor",
    "PullRequest",
    "PullState",
    "Series",
    "SiteKey",
    "StoreRefusal",
    "StoredObservation",
    "Study",
    "StudyState",
]


class StudyState(StrEnum):
    """Study life cycle: receiving -> complete -> queued -> scoring -> scored | failed.

    ``ignored`` is terminal for studies that hold no whole-slide images (for example a
    study that only received a structured report).
    """

    RECEIVING = "receiving"
    COMPLETE = "complete"
    QUEUED = "queued"
    SCORING = "scoring"
    SCORED = "scored"
    FAILED = "failed"
    IGNORED = "ignored"


class JobState(StrEnum):
    """Job life cycle: queued -> running -> done | failed (running -> queued on retry).

    A queued job that a new routing of its study no longer asks for (the study was
    reopened and routed again before the job ran) is ``cancelled``.
    """

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        """Store UTC; naive values are refused (they would be ambiguous)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("catalog timestamps must be timezone-aware")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        """Return aware UTC datetimes."""
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of the catalog."""

    type_annotation_map = {dt.datetime: UtcDateTime()}


class Study(Base):
    """One DICOM study = one case."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    accession_number: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default=StudyState.RECEIVING, index=True)
    state_reason: Mapped[str | None] = mapped_column(Text)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    first_received_at: Mapped[dt.datetime] = mapped_column(default=_utc)
    last_received_at: Mapped[dt.datetime] = mapped_column(default=_utc)
    completed_at: Mapped[dt.datetime | None]
    scored_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=_utc, onupdate=_utc)
    hold_reason: Mapped[str | None] = mapped_column(Text)
    routing: Mapped[str | None] = mapped_column(Text)
    #: Keyed digests of the patient identity (:mod:`.identity`); never the values.
    patient_identity: Mapped[str | None] = mapped_column(String(200))
    #: Who sent the study's first instance: a calling AE title, or ``pacs:<name>``.
    opened_by: Mapped[str | None] = mapped_column(String(80))
    #: Set when a result was withheld for a person to look at (shown on the status page).
    review_reason: Mapped[str | None] = mapped_column(Text)

    series: Mapped[list[Series]] = relationship(back_populates="study")


class Series(Base):
    """One series of a study (a WSI series is one slide)."""

    __tablename__ = "series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    finest_volume_mpp: Mapped[float | None] = mapped_column(Float)
    first_received_at: Mapped[dt.datetime] = mapped_column(default=_utc)
    last_received_at: Mapped[dt.datetime] = mapped_column(default=_utc)

    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    """One stored version of one SOP instance (file in the spool)."""

    __tablename__ = "instances"
    __table_args__ = (UniqueConstraint("sop_instance_uid", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), index=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    transfer_syntax_uid: Mapped[str] = mapped_column(String(64))
    image_flavor: Mapped[str | None] = mapped_column(String(16))
    pixel_spacing_um: Mapped[float | None] = mapped_column(Float)
    version: Mapped[int] = mapped_column(Integer, default=1)
    current: Mapped[bool] = mapped_column(Boolean, default=True)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(default=_utc)
    association_id: Mapped[int | None] = mapped_column(ForeignKey("associations.id"))

    series: Mapped[Series] = relationship(back_populates="instances")


class Association(Base):
    """Audit record of one DICOM association (accepted or rejected)."""

    __tablename__ = "associations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    direction: Mapped[str] = mapped_column(String(8), default="inbound")
    calling_ae: Mapped[str] = mapped_column(String(16))
    called_ae: Mapped[str] = mapped_column(String(16))
    peer_host: Mapped[str] = mapped_column(String(64))
    peer_port: Mapped[int] = mapped_column(Integer)
    tls: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[dt.datetime] = mapped_column(default=_utc)
    ended_at: Mapped[dt.datetime | None]
    result: Mapped[str] = mapped_column(String(32), default="requested")
    reason: Mapped[str | None] = mapped_column(Text)
    instances_received: Mapped[int] = mapped_column(Integer, default=0)
    instances_failed: Mapped[int] = mapped_column(Integer, default=0)
    bytes_received: Mapped[int] = mapped_column(BigInteger, default=0)


class StoreRefusal(Base):
    """Audit record of one refused C-STORE: which instance, the status sent, and why."""

    __tablename__ = "store_refusals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    association_id: Mapped[int | None] = mapped_column(ForeignKey("associations.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=_utc)
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)


class Job(Base):
    """A unit of queued work (one analysis of one study) with its lease and retry state.

    ``job_key`` is the routing request's key (``hrd``, ``her2``, ``her2:<block>``);
    ``request`` its JSON (slides, roles, modality path); ``batch`` groups the jobs one
    routing of the study created, so the study is scored (or failed) when the last of
    them ends. Jobs from before analyses existed are HRD jobs without a request (every
    slide of the study).
    """

    __tablename__ = "jobs"
    __table_args__ = (
        # One queued job per study and analysis request: queuing again reuses it.
        Index(
            "ux_jobs_queued_key",
            "study_id",
            "job_key",
            unique=True,
            sqlite_where=text("state = 'queued'"),
            postgresql_where=text("state = 'queued'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="score")
    analysis: Mapped[str] = mapped_column(
        String(16), default=LEGACY_ANALYSIS, server_default=LEGACY_ANALYSIS
    )
    job_key: Mapped[str] = mapped_column(
        String(64), default=LEGACY_ANALYSIS, server_default=LEGACY_ANALYSIS
    )
    request: Mapped[str | None] = mapped_column(Text)
    batch: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None]
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=_utc, index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=_utc)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_utc, onupdate=_utc)
    finished_at: Mapped[dt.datetime | None]
    published_at: Mapped[dt.datetime | None]


class AnalysisResult(Base):
    """The latest result of one analysis request of a study (its outbox folder, call).

    One row per study and ``job_key``; a newer result replaces the row (and names the
    earlier one as its predecessor in the SR and the Observation).
    """

    __tablename__ = "analysis_results"
    __table_args__ = (UniqueConstraint("study_id", "job_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    job_key: Mapped[str] = mapped_column(String(64))
    analysis: Mapped[str] = mapped_column(String(16))
    result_path: Mapped[str] = mapped_column(Text)
    call: Mapped[str | None] = mapped_column(String(32))
    value: Mapped[float | None] = mapped_column(Float)
    modality_path: Mapped[str | None] = mapped_column(String(32))
    model_key: Mapped[str | None] = mapped_column(String(160))
    demo: Mapped[bool] = mapped_column(Boolean, default=False)
    scored_at: Mapped[dt.datetime] = mapped_column(default=_utc)
    #: Digest of the model and the exact input files: equal means a re-run is not needed.
    inputs_key: Mapped[str | None] = mapped_column(String(64))
    #: The output manifest (:class:`~gateway.catalog.manifest.ResultManifest`, JSON).
    outputs: Mapped[str | None] = mapped_column(Text)


class SiteKey(Base):
    """The fingerprint of a site secret the catalog's rows were made with (never the key).

    ``patient-identity``: the key of the studies' patient identity digests; a receiver
    with another key refuses to start rather than refuse every instance of earlier studies.
    """

    __tablename__ = "site_keys"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=_utc)


class Lease(Base):
    """A cluster-wide lease: who acts as, for example, the completion leader, and until when."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[dt.datetime]
    acquired_at: Mapped[dt.datetime]


class AttemptOutcome(StrEnum):
    """How one attempt at a job or a delivery ended (metrics label them so)."""

    DONE = "done"
    """A job finished (its result is recorded)."""
    DELIVERED = "delivered"
    """A delivery reached its destination."""
    RETRY = "retry"
    """It failed and is tried again after a back-off."""
    FAILED = "failed"
    """A job failed for good (permanent error, or its attempts are spent)."""
    DEAD_LETTER = "dead-letter"
    """A delivery's attempts are spent: an operator redispatches it."""
    LOST = "lost"
    """Another node holds it now (the lease expired): its outcome is not this node's."""


#: How a job attempt can end (:class:`~gateway.queue.runner.JobRunner`).
JOB_OUTCOMES = (
    AttemptOutcome.DONE,
    AttemptOutcome.RETRY,
    AttemptOutcome.FAILED,
    AttemptOutcome.LOST,
)
#: How a delivery attempt can end (:class:`~gateway.dispatch.dispatcher.Dispatcher`).
DELIVERY_OUTCOMES = (AttemptOutcome.DELIVERED, AttemptOutcome.RETRY, AttemptOutcome.DEAD_LETTER)


class DeliveryState(StrEnum):
    """Delivery life cycle: pending -> delivered | dead-letter (pending again on redispatch)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD_LETTER = "dead-letter"


class Delivery(Base):
    """One result to one destination, with its retry state."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("report_key", "destination"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    report_key: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    files: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=8)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=_utc, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=_utc)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_utc, onupdate=_utc)
    delivered_at: Mapped[dt.datetime | None]


class StoredObservation(Base):
    """FHIR Observations served read-only by the gateway's FHIR endpoint.

    This table holds the patient identifier (the Observation's subject); like the spool,
    the catalog is protected health information at rest.
    """

    __tablename__ = "observations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    patient_system: Mapped[str] = mapped_column(String(200), index=True)
    patient_value: Mapped[str] = mapped_column(String(64), index=True)
    code_system: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(64), index=True)
    resource: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=_utc)
    #: ``effectiveDateTime`` (search ``date``).
    effective_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    #: When the row last changed (search ``_lastUpdated``; ``meta.lastUpdated``).
    updated_at: Mapped[dt.datetime | None] = mapped_column(index=True)


class ObservationIdentifier(Base):
    """One ``Observation.identifier`` (search ``identifier``), written with its Observation."""

    __tablename__ = "observation_identifiers"
    __table_args__ = (Index("ix_observation_identifiers_system_value", "system", "value"),)

    observation_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("observations.id", ondelete="CASCADE"), primary_key=True
    )
    system: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(String(200), primary_key=True)


class PullState(StrEnum):
    """A pull request's life cycle: queued -> running -> done | failed."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class PullRequest(Base):
    """A request to pull studies from a PACS (HTTP ``POST /api/pull``), run by a receiver."""

    __tablename__ = "pull_requests"
    __table_args__ = (
        # One queued or running request per key: identical requests share it.
        Index(
            "ux_pull_requests_active_key",
            "key",
            unique=True,
            sqlite_where=text("state IN ('queued', 'running')"),
            postgresql_where=text("state IN ('queued', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), default=PullState.QUEUED, index=True)
    pacs: Mapped[str] = mapped_column(String(64))
    method: Mapped[str | None] = mapped_column(String(16))
    accession_number: Mapped[str | None] = mapped_column(String(64))
    study_uid: Mapped[str | None] = mapped_column(String(64))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    study_date: Mapped[str | None] = mapped_column(String(17))
    requested_by: Mapped[str | None] = mapped_column(String(64))
    studies: Mapped[str | None] = mapped_column(Text)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=_utc)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]


class PullCursor(Base):
    """Where the auto-pull poller of one PACS continues (last successful query)."""

    __tablename__ = "pull_cursors"

    pacs: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_success_at: Mapped[dt.datetime]
    last_attempt_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class FhirResource(Base):
    """Device, Provenance and ImagingStudy resources served by the FHIR endpoint.

    ``search_key`` is what the resource is searched by: the Device's identifier
    (``system|value``), the Provenance's target (``Observation/<id>``), the ImagingStudy's
    Study Instance UID. ImagingStudy names its patient by identifier (protected health
    information, as in ``observations``).
    """

    __tablename__ = "fhir_resources"

    resource_type: Mapped[str] = mapped_column(String(32), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_id: Mapped[int | None] = mapped_column(ForeignKey("studies.id"), index=True)
    search_key: Mapped[str] = mapped_column(String(256), index=True)
    resource: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_utc, onupdate=_utc)


class AccessAction(StrEnum):
    """What an audited HTTP request did."""

    READ = "read"
    SEARCH = "search"
    LOGIN = "login"
    LOGIN_FAILED = "login-failed"
    LOGOUT = "logout"
    REQUEUE = "requeue"
    REDISPATCH = "redispatch"


class HttpAccess(Base):
    """Audit record of one HTTP read of results, or one operator action.

    Who (token name), when, from where, what (route, resource type and ids). Query
    values (patient identifiers in FHIR searches) are never stored; the ids of what was
    returned are.
    """

    __tablename__ = "http_access"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=_utc, index=True)
    token_name: Mapped[str] = mapped_column(String(64), index=True)
    client: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    route: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(16))
    status: Mapped[int] = mapped_column(Integer)
    resource_type: Mapped[str | None] = mapped_column(String(32))
    resources: Mapped[str] = mapped_column(Text, default="[]")
    result_count: Mapped[int] = mapped_column(Integer, default=0)


class HttpSession(Base):
    """A status-page session: the cookie is opaque; only its SHA-256 is stored."""

    __tablename__ = "http_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_name: Mapped[str] = mapped_column(String(64), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    client: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=_utc)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    revoked_at: Mapped[dt.datetime | None]
