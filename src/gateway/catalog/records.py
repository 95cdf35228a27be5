"""What the catalog hands out and takes in: instance records and study snapshots.

Plain frozen data (no database session behind them), shared by the receiver, completion,
the life cycle, routing, workers and the status pages.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ihgamp_core.analysis.contract import WSI_SOP_CLASS

if TYPE_CHECKING:
    from .identity import PatientIdentity

__all__ = [
    "WSI_SOP_CLASS",
    "InstanceRecord",
    "RecordOutcome",
    "SeriesFiles",
    "SeriesSnapshot",
    "StudySnapshot",
    "utcnow",
]


def utcnow() -> dt.datetime:
    """Return the current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class InstanceRecord:
    """What the receiver learnt about one stored instance.

    ``patient`` holds keyed digests of its patient identity (no patient data; None
    where no key is configured, e.g. catalog-only tests); ``source`` who sent it (the
    calling AE title, or ``pacs:<name>`` for a retrieve).
    """

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    modality: str | None
    accession_number: str | None
    image_flavor: str | None
    pixel_spacing_um: float | None
    path: str
    size: int
    sha256: str
    patient: PatientIdentity | None = None
    source: str | None = None


@dataclass(frozen=True)
class RecordOutcome:
    """Result of recording an instance."""

    duplicate: bool
    version: int
    reopened: bool


@dataclass(frozen=True)
class SeriesFiles:
    """A series' SOP class, modality and current instance files (for routing and workers)."""

    sop_class_uid: str
    modality: str | None
    paths: list[str]


@dataclass(frozen=True)
class SeriesSnapshot:
    """A series as the completion logic sees it."""

    series_uid: str
    sop_class_uid: str
    instance_count: int
    finest_volume_mpp: float | None
    last_received_at: dt.datetime


@dataclass(frozen=True)
class StudySnapshot:
    """A study with its series, for completion checks and status listings."""

    study_uid: str
    accession_number: str | None
    state: str
    state_reason: str | None
    forced: bool
    first_received_at: dt.datetime
    last_received_at: dt.datetime
    completed_at: dt.datetime | None
    scored_at: dt.datetime | None
    series: tuple[SeriesSnapshot, ...]
    hold_reason: str | None = None
    review_reason: str | None = None
