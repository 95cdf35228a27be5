"""The catalog database: studies, series, instances, associations, jobs (SQLAlchemy 2)."""

from .catalog import (
    ALLOWED_TRANSITIONS,
    Catalog,
    InstanceRecord,
    RecordOutcome,
    SeriesSnapshot,
    StudySnapshot,
    utcnow,
)
from .jobs import ClaimedJob, JobStore, JobView
from .migrations import SCHEMA_VERSION, current_version, migrate
from .schema import JobState, StudyState

__all__ = [
    "ALLOWED_TRANSITIONS",
    "SCHEMA_VERSION",
    "Catalog",
    "ClaimedJob",
    "InstanceRecord",
    "JobState",
    "JobStore",
    "JobView",
    "RecordOutcome",
    "SeriesSnapshot",
    "StudySnapshot",
    "StudyState",
    "current_version",
    "migrate",
    "utcnow",
]
