"""The catalog database: studies, series, instances, associations, jobs (SQLAlchemy 2)."""

from .analyses import AnalysisResultView, AnalysisStore
from .catalog import (
    ALLOWED_TRANSITIONS,
    Catalog,
    InstanceRecord,
    RecordOutcome,
    SeriesFiles,
    SeriesSnapshot,
    StudySnapshot,
    catalog_unavailable,
    utcnow,
)
from .jobs import LEGACY_REQUEST, ClaimedJob, JobRequest, JobStore, JobView
from .manifest import ResultManifest
from .migrations import HEAD, SchemaState, SchemaStatus, schema_status, upgrade
from .schema import JobState, StudyState

__all__ = [
    "ALLOWED_TRANSITIONS",
    "HEAD",
    "LEGACY_REQUEST",
    "AnalysisResultView",
    "AnalysisStore",
    "JobRequest",
    "Catalog",
    "ClaimedJob",
    "InstanceRecord",
    "JobState",
    "JobStore",
    "JobView",
    "RecordOutcome",
    "ResultManifest",
    "SeriesFiles",
    "SeriesSnapshot",
    "StudySnapshot",
    "StudyState",
    "catalog_unavailable",
    "SchemaState",
    "SchemaStatus",
    "schema_status",
    "upgrade",
    "utcnow",
]
